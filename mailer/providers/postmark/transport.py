"""Postmark's Email API (POST /email) over mailer.providers.net's HTTP client: typed errors from
Postmark's own ErrorCodes, no redirects.

Not through an SDK (postmarker, python-postmark): they send with requests or urllib, which
follow a redirect from the API host with the server token on and can't connect to an address
checked beforehand."""

from __future__ import annotations

import json
from typing import Any

from django.core.mail import EmailMessage

from ..base import (
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
from ..net import sanitize
from . import DEFAULT_API_URL, DEFAULT_MESSAGE_STREAM

# Postmark's API error codes, as listed at https://postmarkapp.com/developer/api/overview
# (#error-codes), each as the outcome it means for one message sent to /email. Postmark answers
# them with HTTP 422 and {"ErrorCode": n, "Message": "..."}; a code not listed here is about
# the payload, as any 422 is ("something with the message isn't quite right").
ERROR_CODES: dict[int, type[ProviderError]] = {
    10: ProviderAuthError,  # Bad or missing API token
    100: ProviderUnavailable,  # Maintenance
    300: MessageRejected,  # Invalid email request: addresses, no body, > 50 recipients
    400: ProviderAuthError,  # Sender signature not found: this account can't send as From
    401: ProviderAuthError,  # Sender signature not confirmed
    402: MessageRejected,  # Invalid JSON
    403: MessageRejected,  # Incompatible JSON: invalid request fields
    405: ProviderAuthError,  # Not allowed to send: the account is out of credits
    406: MessageRejected,  # Inactive recipient: hard bounce, spam complaint or suppression
    409: MessageRejected,  # JSON required
    411: MessageRejected,  # Forbidden attachment type
    412: ProviderAuthError,  # Account is pending: only its own domain's recipients
    413: ProviderAuthError,  # Account may not send
    429: ProviderThrottled,  # Rate limit exceeded: a pause, not an outage
    500: ProviderUnavailable,  # Postmark's side failed to look the sender signature up
}

# Set from Postmark's own fields (From, To, Cc, Bcc, Subject, ReplyTo) or by the MIME it builds:
# a second copy in Headers would send the header twice or fight the field.
RESERVED_HEADERS = frozenset(
    "from to cc bcc subject reply-to content-type content-transfer-encoding mime-version".split()
)
_BODY_FIELDS = {"text/plain": "TextBody", "text/html": "HtmlBody"}


# Payload -----------------------------------------------------------------------------------


def _addresses(values: Any, field: str) -> str:
    """Postmark's list form: `Name <local@domain>` addresses joined by commas, the domain
    IDNA-encoded (its domain check is ASCII), the name in UTF-8 (Postmark encodes it)."""
    return ", ".join(display_address(value, field) for value in values)


def _bodies(message: EmailMessage, charset: str) -> dict[str, str]:
    """TextBody and HtmlBody: the main body and its alternatives, one of each at most (another
    type of alternative has no field here, so it can't be sent through Postmark)."""
    found: dict[str, str] = {}
    for content, mimetype in bodies(message):
        key = _BODY_FIELDS.get(mimetype)
        if key is None or key in found:
            again = "a second" if key else "a"
            raise MessageRejected(
                f"Postmark takes one text/plain and one text/html body, not {again} {mimetype} one",
                code="alternative",
            )
        found[key] = text(content, charset)
    return found


def _attachment(attachment: Attachment) -> dict[str, str]:
    """A file, or an inline part (marked inline, with a Content-ID: Postmark wants "cid:...")."""
    entry = {
        "Name": attachment.filename,
        "Content": attachment.base64,
        "ContentType": attachment.mimetype,
    }
    if attachment.disposition == "inline" and attachment.content_id:
        entry["ContentID"] = f"cid:{attachment.content_id}"
    return entry


def build_payload(message: EmailMessage, message_stream: str) -> dict[str, Any]:
    """The /email JSON body for a Django message."""
    charset = message_charset(message)
    payload: dict[str, Any] = {"From": display_address(sender(message), "from")}
    for key, field in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        if values := getattr(message, field):
            payload[key] = _addresses(values, field)
    if replies := reply_to(message):
        payload["ReplyTo"] = _addresses(replies, "reply_to")
    if message.subject:
        payload["Subject"] = str(message.subject)
    payload.update(_bodies(message, charset))
    if headers := custom_headers(message, RESERVED_HEADERS):
        payload["Headers"] = [{"Name": name, "Value": value} for name, value in headers]
    if files := attachments(message, charset, "Postmark"):
        payload["Attachments"] = [_attachment(attachment) for attachment in files]
    # Delivery events carry Metadata back: the webhook finds the exact email by it.
    email_id = metadata(message).get("email_id")
    if email_id is not None:
        payload["Metadata"] = {"email_id": str(email_id)}
    payload["MessageStream"] = message_stream
    return payload


# Provider ----------------------------------------------------------------------------------


class PostmarkProvider(HttpProvider):
    kind = "postmark"
    default_base_url = DEFAULT_API_URL
    base_url_setting = "api_url"

    def __init__(
        self,
        *,
        server_token: str | None = None,
        message_stream: str | None = None,
        api_url: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(base_url=api_url, **kwargs)
        self.server_token = server_token
        self.message_stream = message_stream or DEFAULT_MESSAGE_STREAM

    def auth_headers(self) -> dict[str, str]:
        token = clean_key(self.kind, "server_token", self.server_token)
        return {"X-Postmark-Server-Token": token}

    def prepare(self, message: EmailMessage) -> HttpRequest:
        return HttpRequest.json("/email", build_payload(message, self.message_stream))

    def message_id(self, answer: HttpAnswer) -> str:
        # {"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}; json_errors
        # reads any one text field, sanitized.
        return json_errors(answer.body, ("MessageID",))

    def error_detail(self, body: bytes) -> str:
        """Postmark's {"ErrorCode": n, "Message": "..."}, as "ErrorCode n: ..."."""
        code, message = _error_fields(body)
        if code is None:
            return message
        return f"ErrorCode {code}: {message}" if message else f"ErrorCode {code}"

    def refusal(self, answer: HttpAnswer) -> ProviderError:
        """A 422 says what is wrong in its ErrorCode (ERROR_CODES); every other status means
        what it means for any HTTP API (401: the token, 429: throttled, 5xx: Postmark's side).
        The code is "422/<ErrorCode>", so a 401 ErrorCode is not read as an HTTP 401."""
        code, _ = _error_fields(answer.body)
        if answer.status != 422 or code is None:
            return super().refusal(answer)
        error = ERROR_CODES.get(code, MessageRejected)
        detail = self.error_detail(answer.body)
        return error(f"HTTP 422: {detail}", code=f"422/{code}")


def _error_fields(body: bytes) -> tuple[int | None, str]:
    """(ErrorCode, sanitized Message) of an answer; (None, "") when it has neither."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    code = data.get("ErrorCode")
    message = data.get("Message")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        sanitize(message) if isinstance(message, str) else "",
    )
