"""SendGrid v3 Mail Send over mailer.providers.net's HTTP client: typed errors, no redirects.

Not through the official SDK's client: it sends with urllib, which follows a redirect from the
provider host with the Authorization header on, can't connect to an address checked beforehand,
and echoes whole answer bodies in its errors."""

from __future__ import annotations

import json
from typing import Any

from django.core.mail import EmailMessage

from ..base import ProviderError
from ..http import HttpProvider, HttpRequest, clean_key
from ..httpclient import HttpAnswer
from ..message_parts import (
    Attachment,
    attachments,
    bodies,
    custom_headers,
    message_charset,
    reply_to,
    sender,
    split_address,
    text,
    unique_addresses,
)
from ..net import sanitize

DEFAULT_HOST = "https://api.sendgrid.com"

# SendGrid answers 400 when `headers` tries to set any of these; the structured fields
# (from, personalizations, reply_to, subject, content) carry them instead.
RESERVED_HEADERS = frozenset(
    "x-sg-id x-sg-eid received dkim-signature content-type content-transfer-encoding "
    "to from subject reply-to cc bcc".split()
)

# SendGrid wants text/plain first, then text/html, then anything else.
_CONTENT_ORDER = {"text/plain": 0, "text/html": 1}


# Payload -----------------------------------------------------------------------------------


def _email(name: str, address: str) -> dict[str, str]:
    """SendGrid's {"email", "name"} form of a split address (JSON: the name needs no quoting)."""
    return {"email": address, "name": name} if name else {"email": address}


def _personalization(message: EmailMessage) -> dict[str, list[dict[str, str]]]:
    """to, cc and bcc of the one personalization. SendGrid refuses one naming an address twice
    across to/cc/bcc; the recipient gets the message once either way."""
    labelled = ((kind, value) for kind in ("to", "cc", "bcc") for value in getattr(message, kind))
    personalization: dict[str, list[dict[str, str]]] = {}
    for field, name, address in unique_addresses(labelled):
        personalization.setdefault(field, []).append(_email(name, address))
    return personalization


def _content(message: EmailMessage, charset: str) -> list[dict[str, str]]:
    """Every non-empty body, whatever its type (SendGrid refuses a value shorter than one
    character), text/plain first, then text/html, then the rest."""
    content = [
        {"type": mimetype, "value": text(value, charset)} for value, mimetype in bodies(message)
    ]
    return sorted(content, key=lambda c: _CONTENT_ORDER.get(c["type"], 2))


def _attachment(attachment: Attachment) -> dict[str, str]:
    """A file, or an inline part: one marked inline that has a Content-ID."""
    inline = attachment.disposition == "inline" and attachment.content_id
    entry = {
        "content": attachment.base64,
        "filename": attachment.filename,
        "type": attachment.mimetype,
        "disposition": "inline" if inline else "attachment",
    }
    if inline:
        entry["content_id"] = attachment.content_id
    return entry


def build_payload(message: EmailMessage) -> dict[str, Any]:
    """The v3 mail/send JSON body for a Django message: one personalization for everyone."""
    charset = message_charset(message)
    payload: dict[str, Any] = {
        "personalizations": [_personalization(message)],
        "from": _email(*split_address(sender(message), "from")),
    }
    if message.subject:
        payload["subject"] = str(message.subject)
    replies = [_email(*split_address(value, "reply_to")) for value in reply_to(message)]
    if len(replies) == 1:
        payload["reply_to"] = replies[0]
    elif replies:
        payload["reply_to_list"] = replies
    if content := _content(message, charset):
        payload["content"] = content
    if files := attachments(message, charset, "SendGrid"):
        payload["attachments"] = [_attachment(attachment) for attachment in files]
    if headers := custom_headers(message, RESERVED_HEADERS):
        payload["headers"] = dict(headers)
    if metadata := getattr(message, "metadata", None):
        # Our email id: SendGrid echoes custom_args at the top level of each event it posts
        # (events.py reads it), and takes only string values.
        payload["custom_args"] = {str(key): str(value) for key, value in metadata.items()}
    return payload


# Provider ----------------------------------------------------------------------------------


class SendGridProvider(HttpProvider):
    kind = "sendgrid"
    default_base_url = DEFAULT_HOST
    base_url_setting = "host"

    def __init__(self, *, api_key: str | None = None, host: str | None = None, **kwargs: Any):
        # Accept "https://api.sendgrid.com/", ".../v3" or ".../v3/": the path is ours.
        base = (host or DEFAULT_HOST).strip().rstrip("/").removesuffix("/v3")
        super().__init__(base_url=base, **kwargs)
        self.api_key = api_key

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {clean_key(self.kind, 'api_key', self.api_key)}"}

    def prepare(self, message: EmailMessage) -> HttpRequest:
        return HttpRequest.json("/v3/mail/send", build_payload(message))

    def message_id(self, answer: HttpAnswer) -> str:
        return answer.headers.get("X-Message-Id") or ""

    def error_detail(self, body: bytes) -> str:
        """The messages of SendGrid's {"errors": [{"message", "field", "help"}]}."""
        try:
            errors = json.loads(body.decode("utf-8"))["errors"]
            parts = [
                f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"])
                for e in errors
            ]
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
            return ""
        return sanitize("; ".join(parts))

    def refusal(self, answer: HttpAnswer) -> ProviderError:
        error = super().refusal(answer)
        reset = answer.headers.get("X-RateLimit-Reset")
        if answer.status == 429 and reset:
            error.message = f"{error.message} (rate limit resets at {sanitize(reset, 40)})"
            error.args = (error.message,)
        return error
