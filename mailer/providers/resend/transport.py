"""Resend's POST /emails over mailer.providers.net's HTTP client: typed errors, no redirects, and
an idempotency key per stored email, so a retry after an ambiguous attempt can't send twice.

Not through the official SDK: it sends with requests, which follows a redirect from the provider
host with the Authorization header on and can't connect to an address checked beforehand.
Reference: https://resend.com/docs/api-reference/emails/send-email and /api-reference/errors."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.core.mail import EmailMessage

from ..base import (
    ConfigurationError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
)
from ..http import HttpProvider, HttpRequest, clean_key, json_errors
from ..httpclient import HttpAnswer
from ..message_parts import (
    Attachment,
    attachments,
    bodies,
    custom_headers,
    display_address,
    message_charset,
    metadata,
    reply_to,
    sender,
    text,
)
from . import DEFAULT_API_URL

IDEMPOTENCY_PREFIX = "emailservice-"

# Resend's error names (its errors reference), as our outcomes. A name not listed is judged by
# its HTTP status alone (base.error_for_http_status).
ERRORS: dict[str, type[ProviderError]] = {
    # The key, the account or the api_url: every message would fail alike until someone acts.
    "missing_api_key": ProviderAuthError,
    "invalid_api_key": ProviderAuthError,
    "restricted_api_key": ProviderAuthError,
    "suspended_api_key": ProviderAuthError,
    "invalid_permission": ProviderAuthError,
    "invalid_to_address": ProviderAuthError,  # older docs: 403, the test-only sender
    "not_found": ProviderAuthError,  # the api_url leads somewhere that is not the API
    "method_not_allowed": ProviderAuthError,
    # The message itself: any provider would refuse it (but see error_class for 401/403).
    "validation_error": MessageRejected,
    "invalid_from_address": MessageRejected,
    "invalid_attachment": MessageRejected,
    "missing_required_field": MessageRejected,
    "missing_required_fields": MessageRejected,
    # This provider, now: throttling (a pause, its Retry-After kept), quota, its own failures.
    # A daily or monthly quota won't clear within a pause: it counts towards the circuit.
    "rate_limit_exceeded": ProviderThrottled,
    "daily_quota_exceeded": ProviderUnavailable,
    "monthly_quota_exceeded": ProviderUnavailable,
    "application_error": ProviderUnavailable,
    "internal_server_error": ProviderUnavailable,
    "service_unavailable": ProviderUnavailable,
    # Idempotency (409). Concurrent: an earlier attempt with this key (one that ended ambiguous)
    # is still running at Resend; its result is unknown, so this provider can't say now: try
    # later or the next provider. A changed payload under the same key is never the message's
    # fault but ours (a payload built differently between attempts) or another installation's
    # (the same email id sent through one Resend account within 24 h): rejecting would fail an
    # email that any other provider, or a fresh key, would send, so it is "this provider can't".
    "concurrent_idempotent_requests": ProviderUnavailable,
    "invalid_idempotent_request": ProviderUnavailable,
    "invalid_idempotency_key": ProviderUnavailable,
}

# Carried by their own fields (an explicit From or Reply-To header wins over the attribute, as in
# Django's own message()); the MIME framing is Resend's to write.
OWN_FIELD_HEADERS = frozenset(
    "from to cc bcc reply-to subject content-type content-transfer-encoding mime-version".split()
)
_BODY_FIELDS = {"text/plain": "text", "text/html": "html"}
_TAG_VALUE = re.compile(r"[A-Za-z0-9_-]{1,200}")  # Resend's tag charset; a key fits in 256


def error_class(status: int, name: str) -> type[ProviderError] | None:
    """Our class for one of Resend's error answers, or None to judge by the status alone."""
    found = ERRORS.get(name)
    if found is MessageRejected and status in (401, 403):
        # Resend names some account problems validation_error: a 403 for an unverified domain or
        # the test-only sender, a 401 for a key that doesn't exist. Another provider may send it.
        return ProviderAuthError
    return found


# Payload -----------------------------------------------------------------------------------


def email_id(message: EmailMessage) -> str:
    """Our email id (compose.py puts it in message.metadata), if it fits a Resend tag value;
    site mail has none."""
    found = metadata(message)
    value = str(found.get("email_id") or "") if isinstance(found, dict) else ""
    return value if _TAG_VALUE.fullmatch(value) else ""


def idempotency_key(message: EmailMessage) -> str:
    """The same key on every attempt of one stored email, at any Resend config: Resend answers
    a repeat with the first attempt's id instead of sending again (for 24 hours). Made from the
    email's stored Message-ID (random, and unique to this email in any installation: an email id
    alone would collide between staging and production sharing one Resend account). Site mail,
    whose Message-ID Django makes anew per attempt, gets none."""
    if not email_id(message):
        return ""
    message_id = str(message.extra_headers.get("Message-ID") or "")
    if not message_id:
        return ""
    return IDEMPOTENCY_PREFIX + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def _address(value: Any, field: str) -> str:
    """ "Name <local@domain>" as Resend takes it: the name as given (quoted when it holds
    specials), the domain IDNA-encoded as Django's own message() does for SMTP. An address
    holding a line break is refused."""
    return display_address(str(value), field, one_line=True)


def _bodies(message: EmailMessage, charset: str) -> dict[str, str]:
    """text and html: Resend takes one of each, so any other alternative can't be sent."""
    found: dict[str, str] = {}
    for content, mimetype in bodies(message):
        field = _BODY_FIELDS.get(mimetype.split(";")[0].strip().lower())
        if field is None or field in found:
            raise MessageRejected(
                f"Resend takes one text/plain and one text/html body, not this {mimetype} one",
                code="body",
            )
        found[field] = text(content, charset)
    if "html" in found and "text" not in found:
        # Resend would write a text version of the HTML; "" opts out, so the message arrives as
        # given, as through every other provider.
        found["text"] = ""
    return found


def _attachment(attachment: Attachment) -> dict[str, str]:
    """A file, or an inline part: one with a Content-ID that is not marked "attachment"
    (Django's MIMEImage recipe sets no disposition); Resend makes a part with a content_id
    inline."""
    entry = {
        "filename": attachment.filename,
        "content": attachment.base64,
        "content_type": attachment.mimetype,
    }
    if attachment.content_id and attachment.disposition != "attachment":
        entry["content_id"] = attachment.content_id
    return entry


def build_payload(message: EmailMessage) -> dict[str, Any]:
    """The POST /emails JSON body for a Django message."""
    charset = message_charset(message)
    # A From or Reply-To header in any letter case wins (its own field carries it).
    payload: dict[str, Any] = {
        "from": _address(sender(message, any_case=True), "from"),
        "to": [_address(value, "to") for value in message.to],
        "subject": str(message.subject),
    }
    for field in ("cc", "bcc"):
        if addresses := getattr(message, field):
            payload[field] = [_address(value, field) for value in addresses]
    if replies := reply_to(message, any_case=True):
        payload["reply_to"] = [_address(value, "reply_to") for value in replies]
    payload.update(_bodies(message, charset))
    if files := attachments(message, charset, "Resend"):
        payload["attachments"] = [_attachment(attachment) for attachment in files]
    if headers := custom_headers(message, OWN_FIELD_HEADERS):
        payload["headers"] = dict(headers)
    if found := email_id(message):
        payload["tags"] = [{"name": "email_id", "value": found}]
    return payload


# Provider ----------------------------------------------------------------------------------


class ResendProvider(HttpProvider):
    kind = "resend"
    default_base_url = DEFAULT_API_URL
    base_url_setting = "api_url"

    def __init__(self, *, api_key: str | None = None, api_url: str | None = None, **kwargs: Any):
        super().__init__(base_url=api_url, **kwargs)
        self.api_key = api_key

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {clean_key(self.kind, 'api_key', self.api_key)}"}

    def prepare(self, message: EmailMessage) -> HttpRequest:
        key = idempotency_key(message)
        headers = {"Idempotency-Key": key} if key else {}
        return HttpRequest.json("/emails", build_payload(message), headers)

    def message_id(self, answer: HttpAnswer) -> str:
        return json_errors(answer.body, ("id",))

    def error_detail(self, body: bytes) -> str:
        """ "name: message" of Resend's {"statusCode", "name", "message"}."""
        name, text = json_errors(body, ("name",)), json_errors(body, ("message",))
        return f"{name}: {text}" if name and text else name or text

    def refusal(self, answer: HttpAnswer) -> ProviderError:
        error = super().refusal(answer)  # a redirect, or judged by the status alone
        if isinstance(error, ConfigurationError):
            return error
        found = error_class(answer.status, json_errors(answer.body, ("name",)))
        if found is None or type(error) is found:
            return error
        return found(error.message, code=error.code)
