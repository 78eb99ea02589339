"""SendGrid v3 Mail Send over mailer.providers.net's HTTP client: typed errors, no redirects.

Not through the official SDK's client: it sends with urllib, which follows a redirect from the
provider host with the Authorization header on, can't connect to an address checked beforehand,
and echoes whole answer bodies in its errors."""

from __future__ import annotations

import base64
import email.message
import json
import logging
import threading
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import DEFAULT_ATTACHMENT_MIME_TYPE
from django.utils.encoding import punycode

from .base import (
    ConfigurationError,
    MessageRejected,
    Provider,
    ProviderError,
    error_for_http_status,
)
from .httpclient import HttpAnswer, HttpClient
from .net import Deadline, sanitize

logger = logging.getLogger("mailer.providers")

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


def _address(value: Any, field: str) -> dict[str, str]:
    name, addr = parseaddr(str(value))
    local, _, domain = addr.rpartition("@")
    try:
        # IDNA-encode the domain, as Django's own message() does for SMTP.
        domain = domain if domain.isascii() else punycode(domain)
    except UnicodeError:
        domain = ""
    if not local or not domain:
        raise MessageRejected(f"{field} address {value!r} is not valid", code="invalid_address")
    addr = f"{local}@{domain}"
    return {"email": addr, "name": name} if name else {"email": addr}


def _text(value: str | bytes, charset: str) -> str:
    return value.decode(charset) if isinstance(value, bytes) else str(value)


def _attachment_bytes(content: Any, charset: str) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    if isinstance(content, str):
        return content.encode(charset)
    if isinstance(content, EmailMessage):  # message/rfc822 given as a Django message
        return content.message().as_bytes()
    if isinstance(content, email.message.Message):
        return content.as_bytes()
    raise MessageRejected(f"attachment content of type {type(content).__name__} can't be sent")


def _mime_attachment(part: email.message.Message) -> dict[str, str]:
    """An attachment given as a MIMEPart (or legacy MIMEBase): SendGrid takes leaf parts only."""
    payload = None if part.is_multipart() else part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise MessageRejected(
            f"a {part.get_content_type()} attachment part can't be sent through SendGrid",
            code="attachment",
        )
    entry = {
        "content": base64.b64encode(payload).decode("ascii"),
        "filename": part.get_filename() or "attachment",
        "type": part.get_content_type(),
        "disposition": "attachment",
    }
    content_id = str(part.get("Content-ID") or "").strip().strip("<>")
    if part.get_content_disposition() == "inline" and content_id:
        entry.update(disposition="inline", content_id=content_id)
    return entry


def build_payload(message: EmailMessage) -> dict[str, Any]:
    """The v3 mail/send JSON body for a Django message: one personalization for everyone."""
    charset = message.encoding or settings.DEFAULT_CHARSET
    extra = message.extra_headers
    # Like Django's own message(), an explicit From/Reply-To header wins over the attributes.
    sender = extra.get("From", message.from_email)
    reply_to = [extra["Reply-To"]] if "Reply-To" in extra else list(message.reply_to)

    personalization: dict[str, list[dict[str, str]]] = {}
    seen: set[str] = set()
    for field in ("to", "cc", "bcc"):
        for value in getattr(message, field):
            entry = _address(value, field)
            # SendGrid refuses a personalization naming one address twice across to/cc/bcc;
            # the recipient gets the message once either way.
            if entry["email"].lower() not in seen:
                seen.add(entry["email"].lower())
                personalization.setdefault(field, []).append(entry)

    payload: dict[str, Any] = {
        "personalizations": [personalization],
        "from": _address(sender, "from"),
    }
    if message.subject:
        payload["subject"] = str(message.subject)
    if len(reply_to) == 1:
        payload["reply_to"] = _address(reply_to[0], "reply_to")
    elif reply_to:
        payload["reply_to_list"] = [_address(value, "reply_to") for value in reply_to]

    # Empty parts are left out: SendGrid refuses a content value shorter than one character.
    content = []
    if message.body:
        content.append({"type": f"text/{message.content_subtype}", "value": message.body})
    for alternative, mimetype in getattr(message, "alternatives", ()):
        if alternative:
            content.append({"type": mimetype, "value": _text(alternative, charset)})
    if content:
        payload["content"] = sorted(content, key=lambda c: _CONTENT_ORDER.get(c["type"], 2))

    attachments = []
    for attachment in message.attachments:
        if isinstance(attachment, email.message.Message):
            attachments.append(_mime_attachment(attachment))
            continue
        filename, data, mimetype = attachment
        attachments.append(
            {
                "content": base64.b64encode(_attachment_bytes(data, charset)).decode("ascii"),
                "filename": filename or "attachment",
                "type": mimetype or DEFAULT_ATTACHMENT_MIME_TYPE,
                "disposition": "attachment",
            }
        )
    if attachments:
        payload["attachments"] = attachments

    headers = {}
    for name, value in extra.items():
        if name.lower() in RESERVED_HEADERS:
            continue
        text = str(value)  # SendGrid wants string values, Django allows any
        if "\r" in text or "\n" in text:
            raise MessageRejected(f"header {name} contains a line break", code="header")
        headers[str(name)] = text
    if headers:
        payload["headers"] = headers
    return payload


# Errors ------------------------------------------------------------------------------------


def _error_detail(body: bytes) -> str:
    """The messages of SendGrid's {"errors": [{"message", "field", "help"}]}, sanitized; never
    the raw body, which a host that is not SendGrid could fill with anything."""
    try:
        errors = json.loads(body.decode("utf-8"))["errors"]
        parts = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in errors
        ]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        return ""
    return sanitize("; ".join(parts))


def _http_error(answer: HttpAnswer, label: str) -> ProviderError:
    status = answer.status
    if 300 <= status < 400:
        return ConfigurationError(
            f"{label} answered HTTP {status} with a redirect, which is never followed; "
            "check the host setting",
            setting="host",
        )
    detail = _error_detail(answer.body)
    reset = answer.headers.get("X-RateLimit-Reset")
    if status == 429 and reset:
        detail = f"{detail} (rate limit resets at {sanitize(reset, 40)})"
    return error_for_http_status(status, detail)


# Provider ----------------------------------------------------------------------------------


def _is_base_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        return False


class SendGridProvider(Provider):
    kind = "sendgrid"

    def __init__(self, *, api_key: str | None = None, host: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.api_key = api_key
        # Accept "https://api.sendgrid.com/", ".../v3" or ".../v3/": the path is ours.
        base = (host or DEFAULT_HOST).strip().rstrip("/")
        self.host = base.removesuffix("/v3")
        self._client: HttpClient | None = None
        self._auth = ""
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"sendgrid {self.host}"

    def _http(self) -> HttpClient:
        """The HTTP client, built on first use: a missing key fails the attempt, not the import."""
        with self._lock:
            if self._client is None:
                api_key = str(self.require("api_key", self.api_key)).strip()
                if not api_key or any(c in api_key for c in "\r\n"):
                    raise ConfigurationError(
                        "sendgrid setting 'api_key' is malformed", setting="api_key"
                    )
                if not _is_base_url(self.host):
                    raise ConfigurationError(
                        f"sendgrid setting 'host' must be an http(s) URL, not {self.host!r}",
                        setting="host",
                    )
                self._auth = f"Bearer {api_key}"
                self._client = HttpClient(
                    self.host,
                    label=self.describe(),
                    timeout=self.timeout,
                    connect_timeout=self.connect_timeout,
                    allow_private=self.allow_private_hosts,
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def transmit(self, message: EmailMessage, deadline: Deadline) -> str:
        body = json.dumps(build_payload(message)).encode()
        client = self._http()
        answer = client.request(
            "POST",
            "/v3/mail/send",
            body=body,
            headers={
                "Authorization": self._auth,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "emailservice",
            },
            deadline=deadline,
        )
        if not 200 <= answer.status < 300:
            raise _http_error(answer, self.describe())
        message_id = sanitize(answer.headers.get("X-Message-Id") or "", 255)
        if not message_id:
            logger.warning("%s accepted a message without an X-Message-Id", self.describe())
        return message_id
