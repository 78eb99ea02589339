"""The email as a caller asks for it, and the checks every one passes before anything is stored,
whatever door it came in by.

Every check runs in time linear in the input: sizes and counts are checked first, and only input
within them reaches the slower parsers (email.utils, Django's validate_email). The limits are
settings (README: Input limits).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from mailer.errors import InvalidInput, MessageTooLarge

from .headers import check_headers
from .text import control_character, invalid_text, metadata_problem, show

_CONTENT_TYPE = re.compile(r"[\w.+-]{1,127}/[\w.+-]{1,127}")
MAX_CONTENT_TYPE_CHARS = 255


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes
    # The content as the caller sent it in base64 (the API), checked to decode to `content`:
    # stored as it came instead of being encoded again. Empty when it came as bytes.
    encoded: str = ""


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


class InvalidEmail(InvalidInput):
    """The request can't become an email; `errors` maps each field to what a person can fix.
    Too large is MessageTooLarge instead (mailer.errors), which every edge answers apart."""


# Addresses ------------------------------------------------------------------------------------

MAX_ADDRESS_CHARS = 254  # RFC 5321: a path is 256 octets with its angle brackets
MAX_LOCAL_PART_CHARS = 64  # RFC 5321


def max_address_text() -> int:
    """The longest 'Name <address>' text worth parsing: a display name within the limit even if
    every character of it is quoted and escaped, and an address within RFC 5321's."""
    return 2 * settings.MAX_DISPLAY_NAME_CHARS + MAX_ADDRESS_CHARS + 5


def check_address(value: str) -> str | None:
    """Return a message for a bad single address ('Name <a@b>' or 'a@b'), or None."""
    if not isinstance(value, str) or not value.strip():
        return "An address is empty."
    if len(value) > max_address_text():
        return (
            f"{show(value)} is too long: an address may have a display name of at most "
            f"{settings.MAX_DISPLAY_NAME_CHARS} characters and an address of at most "
            f"{MAX_ADDRESS_CHARS}."
        )
    if problem := control_character(value):
        return f"{show(value)} contains {problem}."
    # Bounded and clean from here on: the parsers see at most max_address_text() characters.
    if len(getaddresses([value])) != 1:
        return f"{show(value)} must be a single address."
    name, addr = parseaddr(value)
    if not addr:
        return f"{show(value)} is not a valid email address."
    if len(name) > settings.MAX_DISPLAY_NAME_CHARS:
        return (
            f"The display name of {show(addr)} is {len(name)} characters long; at most "
            f"{settings.MAX_DISPLAY_NAME_CHARS} are allowed."
        )
    if len(addr) > MAX_ADDRESS_CHARS:
        return f"{show(addr)} is {len(addr)} characters long; at most {MAX_ADDRESS_CHARS}."
    local = addr.rpartition("@")[0]
    if len(local) > MAX_LOCAL_PART_CHARS:
        return (
            f"The part before the @ of {show(addr)} is {len(local)} characters long; at most "
            f"{MAX_LOCAL_PART_CHARS} are allowed."
        )
    try:
        validate_email(addr)
    except ValidationError:
        return f"{show(addr)} is not a valid email address."
    return None


# The email ------------------------------------------------------------------------------------


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


def _check_addresses(email: OutgoingEmail, add) -> None:
    if not isinstance(email.from_email, str):
        add("from", "The sender must be text.")
    elif problem := check_address(email.from_email):
        add("from", problem)
    lists = {name: getattr(email, name) for name in ("to", "cc", "bcc", "reply_to")}
    for name, values in lists.items():
        if not isinstance(values, list | tuple):
            add(name, "Give a list of addresses.")
            lists[name] = []
    if not lists["to"]:
        add("to", "At least one recipient is required.")
    limits = {"to": settings.MAX_RECIPIENTS, "cc": settings.MAX_RECIPIENTS}
    limits.update(bcc=settings.MAX_RECIPIENTS, reply_to=settings.MAX_REPLY_TO)
    for name, values in lists.items():
        if name == "reply_to" and len(values) > limits[name]:
            add(name, f"{len(values)} reply-to addresses; at most {limits[name]} are allowed.")
        if len(values) > limits[name]:
            continue  # refused by its count: don't spend time on each address
        for value in values:
            if problem := check_address(value):
                add(name, problem)
    total = len(lists["to"]) + len(lists["cc"]) + len(lists["bcc"])
    if total > settings.MAX_RECIPIENTS:
        add(
            "to",
            f"{total} recipients in to, cc and bcc; at most {settings.MAX_RECIPIENTS} "
            "are allowed per email.",
        )


def _check_subject_and_bodies(email: OutgoingEmail, add) -> None:
    subject = email.subject
    if not isinstance(subject, str):
        add("subject", "The subject must be text.")
    elif len(subject) > settings.MAX_SUBJECT_CHARS:
        add(
            "subject",
            f"The subject is {len(subject)} characters long; at most "
            f"{settings.MAX_SUBJECT_CHARS} are allowed.",
        )
    elif problem := control_character(subject, allow_tab=True):
        add(
            "subject",
            f"The subject must not contain line breaks or control characters; it contains "
            f"{problem}.",
        )
    elif not subject.strip():
        add("subject", "The subject is empty.")
    bodies = {"text": email.text, "html": email.html}
    for name, body in bodies.items():
        if not isinstance(body, str):
            add(name, f"The {name} body must be text.")
            bodies[name] = ""
        elif problem := invalid_text(body):
            add(name, f"The {name} body contains {problem}; remove it.")
    if not bodies["text"].strip() and not bodies["html"].strip():
        add("text", "Give a text or an HTML body (or both).")


def _check_attachments(attachments: Any, add) -> None:
    if not isinstance(attachments, list | tuple):
        add("attachments", "Attachments must be a list.")
        return
    if len(attachments) > settings.MAX_ATTACHMENTS:
        add(
            "attachments",
            f"{len(attachments)} attachments; at most {settings.MAX_ATTACHMENTS} per email.",
        )
        return
    limit = settings.MAX_FILENAME_CHARS
    for number, attachment in enumerate(attachments, start=1):
        filename = attachment.filename
        if not isinstance(filename, str) or not filename.strip():
            add("attachments", f"Attachment {number} needs a filename.")
        elif len(filename) > limit:
            add(
                "attachments",
                f"The filename of attachment {number} is {len(filename)} characters long; at "
                f"most {limit} are allowed.",
            )
        elif problem := control_character(filename):
            add(
                "attachments",
                f"Attachment {number} needs a filename without line breaks or control "
                f"characters; {show(filename)} contains {problem}.",
            )
        content_type = attachment.content_type
        if (
            not isinstance(content_type, str)
            or len(content_type) > MAX_CONTENT_TYPE_CHARS
            or not _CONTENT_TYPE.fullmatch(content_type)
        ):
            shown = show(content_type) if isinstance(content_type, str) else repr(content_type)
            add(
                "attachments",
                f"Attachment {number} has an invalid content type {shown}; use a type like "
                "'application/pdf'.",
            )


def validate(email: OutgoingEmail) -> None:
    """Raise InvalidEmail naming every bad field; MessageTooLarge when all are good but the
    message is over MAX_MESSAGE_BYTES."""
    errors: dict[str, list[str]] = {}

    def add(field_name: str, message: str) -> None:
        errors.setdefault(field_name, []).append(message)

    _check_addresses(email, add)
    _check_subject_and_bodies(email, add)
    check_headers(email.headers, add)
    _check_attachments(email.attachments, add)
    if problem := metadata_problem(email.metadata):
        add("metadata", problem)
    if errors:
        raise InvalidEmail(errors)
    size = encoded_size(email)
    if size > settings.MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            {
                "message": [
                    f"The message is {size} bytes encoded; the limit is "
                    f"{settings.MAX_MESSAGE_BYTES} bytes."
                ]
            }
        )
