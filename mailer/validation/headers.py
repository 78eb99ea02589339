"""Custom headers: an allowlist, because headers route, authenticate and frame a message."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from .text import control_character, show

# Headers --------------------------------------------------------------------------------------

# Headers built from the email's own fields: callers give those fields instead.
OWN_FIELD_HEADERS = {
    "from": "from",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "reply-to": "reply_to",
    "subject": "subject",
}
# Custom headers are an allowlist: these, and X- headers that are not in DENIED_X_PREFIXES.
# Everything else (Sender, Return-Path, Resent-*, Received, DKIM-Signature, Delivered-To,
# Errors-To, Content-*, MIME-Version, Message-ID, Date, ...) routes, authenticates or frames the
# message and is ours to set, or nobody's.
ALLOWED_HEADERS = (
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "In-Reply-To",
    "References",
    "Keywords",
    "Comments",
    "Auto-Submitted",
    "Precedence",
    "Importance",
    "Priority",
)
_ALLOWED_LOWER = frozenset(name.lower() for name in ALLOWED_HEADERS)
# X- headers a provider acts on (adding recipients, templates, tracking, sending identities),
# and the trace, identity and verdict headers receiving systems trust.
DENIED_X_PREFIXES = (
    # Sending providers' control headers.
    "x-smtpapi",  # SendGrid's SMTP API: recipients, substitutions, filters
    "x-sg-",  # SendGrid
    "x-sendgrid-",
    "x-ses-",  # Amazon SES (configuration set, source/from/return-path ARNs, tags)
    "x-amz-",
    "x-mailgun-",  # Mailgun
    "x-mc-",  # Mandrill / Mailchimp Transactional (X-MC-BccAddress, templates)
    "x-pm-",  # Postmark (message stream, tags, metadata)
    "x-mj-",  # Mailjet
    "x-mailjet-",
    "x-msys-",  # SparkPost (X-MSYS-API)
    "x-mailin-",  # Brevo (Sendinblue)
    "x-sib-",
    "x-mt-",  # Mailtrap
    "x-elasticemail-",
    "x-smtp2go-",
    "x-resend-",
    # Trace, identity and verdict headers that mail systems trust.
    "x-ms-",  # Microsoft Exchange / 365 (X-MS-Exchange-Organization-SCL, ...)
    "x-msmail-",
    "x-microsoft-",
    "x-forefront-",
    "x-google-",
    "x-gm-",
    "x-received",
    "x-original-",  # X-Original-To, X-Original-Sender, ...
    "x-originating-",
    "x-forwarded-",
    "x-envelope-",
    "x-rcpt-to",
    "x-sender",
    "x-receiver",
    "x-apparently-to",
    "x-delivered-to",
    "x-authenticated-",
    "x-authentication-",
    "x-spam",
    "x-virus",
    "x-barracuda-",
    "x-proofpoint-",
    "x-mimecast-",
    "x-ironport-",
)
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # printable ASCII without ':' (RFC 5322 ftext)


def header_allowed(name: str) -> bool:
    """Whether a caller may set this custom header (its name is already well-formed)."""
    lower = name.lower()
    if lower in _ALLOWED_LOWER:
        return True
    return lower.startswith("x-") and not lower.startswith(DENIED_X_PREFIXES)


def header_problem(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        shown = show(name) if isinstance(name, str) else repr(name)
        return (
            f"{shown} is not a valid header name (1 to 76 printable ASCII characters, "
            "no spaces or colons)."
        )
    lower = name.lower()
    if lower in OWN_FIELD_HEADERS:
        return f"{name} is set from its own field ({OWN_FIELD_HEADERS[lower]!r}); give it there."
    if not header_allowed(name):
        if lower.startswith("x-"):
            return (
                f"{name} can't be set: it controls a sending provider or claims trace or "
                "verdict information that only mail systems may add."
            )
        return (
            f"{name} can't be set as a custom header. Allowed: X- headers (except providers' "
            f"control headers) and {', '.join(ALLOWED_HEADERS)}."
        )
    if not isinstance(value, str):
        return f"The value of {name} must be text."
    if len(value) > settings.MAX_HEADER_VALUE_CHARS:
        return (
            f"The value of {name} is {len(value)} characters long; at most "
            f"{settings.MAX_HEADER_VALUE_CHARS} are allowed."
        )
    if problem := control_character(value, allow_tab=True):
        return (
            f"The value of {name} must be text without line breaks or control characters; it "
            f"contains {problem}."
        )
    return None


def check_headers(headers: Any, add) -> None:
    if not isinstance(headers, dict):
        add("headers", "Headers must be an object of names and values.")
        return
    if len(headers) > settings.MAX_HEADERS:
        add("headers", f"{len(headers)} custom headers; at most {settings.MAX_HEADERS}.")
        return
    seen: set[str] = set()
    for name, value in headers.items():
        if problem := header_problem(name, value):
            add("headers", problem)
        elif name.lower() in seen:
            add("headers", f"{name} is given more than once (header names ignore case).")
        else:
            seen.add(name.lower())
