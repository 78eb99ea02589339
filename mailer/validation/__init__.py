"""Checks every outgoing email passes before anything is stored, whatever door it came in by:
message.py (the email and its fields), headers.py (the custom-header allowlist), text.py
(characters, and JSON walked within its limits)."""

from .headers import ALLOWED_HEADERS, DENIED_X_PREFIXES, header_allowed
from .message import (
    Attachment,
    InvalidEmail,
    OutgoingEmail,
    check_address,
    decode_base64,
    encoded_size,
    max_address_text,
    validate,
)
from .text import (
    control_character,
    invalid_text,
    json_depth_problem,
    json_too_deep_message,
    parse_json,
)

__all__ = [
    "ALLOWED_HEADERS",
    "DENIED_X_PREFIXES",
    "Attachment",
    "InvalidEmail",
    "OutgoingEmail",
    "check_address",
    "control_character",
    "decode_base64",
    "encoded_size",
    "header_allowed",
    "invalid_text",
    "json_depth_problem",
    "json_too_deep_message",
    "max_address_text",
    "parse_json",
    "validate",
]
