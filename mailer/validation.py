"""Checks every outgoing email passes before anything is stored, whatever door it came in by."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass
class OutgoingEmail:
    """One email as a caller asks for it, before validation and storage."""

    from_email: str
    to: list[str]
    subject: str = ""
    text: str = ""
    html: str = ""
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


class InvalidEmail(Exception):
    """The request can't become an email; `errors` maps each field to what a person can fix."""

    def __init__(self, errors: dict[str, list[str]], *, status: int = 400) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors
        self.status = status


# Headers we build ourselves from structured fields; callers may not smuggle them in.
RESERVED_HEADERS = {
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "return-path",
}
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII without ':' (RFC 5322 ftext)
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def _has_newline(value: str) -> bool:
    return "\r" in value or "\n" in value


def check_address(value: str) -> str | None:
    """Return a message for a bad single address ('Name <a@b>' or 'a@b'), or None."""
    if not isinstance(value, str) or not value.strip():
        return "An address is empty."
    if _has_newline(value):
        return f"{value!r} contains a line break."
    if len(getaddresses([value])) != 1:
        return f"{value!r} must be a single address."
    addr = parseaddr(value)[1]
    if not addr:
        return f"{value!r} is not a valid email address."
    try:
        validate_email(addr)
    except ValidationError:
        return f"{addr!r} is not a valid email address."
    return None


def encoded_size(email: OutgoingEmail) -> int:
    """Roughly the size of the MIME message: bodies plus base64-encoded attachments."""
    size = len(email.text.encode()) + len(email.html.encode()) + len(email.subject.encode())
    size += sum((len(a.content) + 2) // 3 * 4 for a in email.attachments)
    size += sum(len(k) + len(v) for k, v in email.headers.items())
    return size


def decode_base64(value: str) -> bytes:
    """Strict base64 (standard alphabet, padding required); raises ValueError with a reason."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"content is not valid base64: {exc}") from None


def validate(email: OutgoingEmail) -> None:
    """Raise InvalidEmail naming every bad field; 413 when the message is too large."""
    errors: dict[str, list[str]] = {}

    def add(field_name: str, message: str) -> None:
        errors.setdefault(field_name, []).append(message)

    if problem := check_address(email.from_email):
        add("from", problem)
    if not email.to:
        add("to", "At least one recipient is required.")
    for field_name in ("to", "cc", "bcc", "reply_to"):
        for value in getattr(email, field_name):
            if problem := check_address(value):
                add(field_name, problem)
    total = len(email.to) + len(email.cc) + len(email.bcc)
    if total > settings.MAX_RECIPIENTS:
        add(
            "to",
            f"{total} recipients in to, cc and bcc; at most {settings.MAX_RECIPIENTS} "
            "are allowed per email.",
        )
    if _has_newline(email.subject):
        add("subject", "The subject must not contain line breaks.")
    elif not email.subject.strip():
        add("subject", "The subject is empty.")
    if not email.text.strip() and not email.html.strip():
        add("text", "Give a text or an HTML body (or both).")
    for name, value in email.headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            add("headers", f"{name!r} is not a valid header name.")
        elif name.lower() in RESERVED_HEADERS:
            add("headers", f"{name} is set from its own field and can't be given as a header.")
        elif not isinstance(value, str) or _has_newline(value):
            add("headers", f"The value of {name} must be text without line breaks.")
    for index, attachment in enumerate(email.attachments):
        if not attachment.filename or _has_newline(attachment.filename):
            add("attachments", f"Attachment {index + 1} needs a filename without line breaks.")
        if not _CONTENT_TYPE.match(attachment.content_type or ""):
            add(
                "attachments",
                f"Attachment {index + 1} has an invalid content type "
                f"{attachment.content_type!r}; use a type like 'application/pdf'.",
            )
    if errors:
        raise InvalidEmail(errors)
    size = encoded_size(email)
    if size > settings.MAX_MESSAGE_BYTES:
        raise InvalidEmail(
            {
                "message": [
                    f"The message is {size} bytes encoded; the limit is "
                    f"{settings.MAX_MESSAGE_BYTES} bytes."
                ]
            },
            status=413,
        )
