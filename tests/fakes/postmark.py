"""A Postmark Email API stand-in on loopback (tests/fakes/http_stub.py): POST /email, its auth,
validation and answers.

It follows Postmark's documentation: "Send a single email" and its body format
(https://postmarkapp.com/developer/api/email-api), the API overview's HTTP statuses and error
codes (https://postmarkapp.com/developer/api/overview: 401 for a missing or wrong
X-Postmark-Server-Token, 422 with {"ErrorCode", "Message"}, 413 past 10 MB, 429, 500), the
support articles on ErrorCode 300 (its address checks, the body rule and the 50-recipient limit)
and on 422 errors, and the 2023 validation notice (415 without JSON Content-Type and Accept,
ErrorCode 402 for invalid JSON, 403 for invalid fields). The answer to a send is
{"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

from tests.fakes.http_stub import Reply, Request, StubServer, stand_in_fixture

VALID_TOKEN = "8f2c1a5e-3b7d-4c9e-a1f0-6d2e8b4c7a93"  # server tokens are UUIDs
MAX_BODY_BYTES = 10 * 1024 * 1024  # the Email API's documented request size limit
MAX_RECIPIENTS = 50  # To, Cc and Bcc together
# Postmark's own address checks (support article "What does Error Code 300 mean?"), plus no
# leading, trailing or consecutive dots in the local part.
_MAILBOX = re.compile(r"^[a-z0-9.!#$%&'`*+\-/=^_{}|~]+$", re.IGNORECASE)
_DOMAIN = re.compile(r"^((\.)?[a-zA-Z0-9\-])+$")
# Some of the file types Postmark refuses as attachments (ErrorCode 411).
FORBIDDEN_EXTENSIONS = frozenset("exe bat com scr vbs pif msi lnk jse hta cpl reg".split())
STRING_FIELDS = ("From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "TextBody", "HtmlBody", "Tag")
OTHER_FIELDS = ("MessageStream", "Headers", "Attachments", "Metadata", "TrackOpens", "TrackLinks")
KNOWN_FIELDS = frozenset((*STRING_FIELDS, *OTHER_FIELDS))

BAD_TOKEN = (
    "The Server Token you provided in the X-Postmark-Server-Token request header was invalid. "
    "Please verify that you are using a valid token."
)
NO_TOKEN = (
    "No Account or Server API tokens were supplied in the HTTP headers. Please add a header "
    "for either X-Postmark-Server-Token or X-Postmark-Account-Token."
)
INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: {}. Inactive recipients are ones that have generated a hard bounce, a spam "
    "complaint, or a manual suppression."
)
NOT_A_SIGNATURE = (
    "The 'From' address you supplied ({}) is not a Sender Signature on your account. Please add "
    "and confirm this address in order to be able to use it in the 'From' field of your "
    "messages."
)


class Refusal(Exception):
    """A 422 answer: Postmark's ErrorCode and Message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def address_ok(addr: str) -> bool:
    local, _, domain = addr.rpartition("@")
    return (
        bool(_MAILBOX.match(local))
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and bool(_DOMAIN.match(domain))
    )


def parse_list(value: str, field: str) -> list[str]:
    """The addresses of a comma-separated field (names may be quoted), each checked."""
    found = []
    if not value.strip():
        return found
    for _, addr in getaddresses([value]):
        if not address_ok(addr):
            raise Refusal(300, f"Error parsing '{field}': Illegal email address '{addr}'.")
        found.append(addr.lower())
    return found


def check_types(body: Any) -> None:
    """ErrorCode 403 for a field that is not what the documented schema says."""
    if not isinstance(body, dict):
        raise Refusal(403, "Invalid request field(s) - body")
    bad = [key for key in body if key not in KNOWN_FIELDS]
    bad += [key for key in STRING_FIELDS if key in body and not isinstance(body[key], str)]
    if "MessageStream" in body and not isinstance(body["MessageStream"], str):
        bad.append("MessageStream")
    for key, item_keys in (("Headers", {"Name", "Value"}), ("Attachments", None)):
        items = body.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            bad.append(key)
        elif item_keys and any(
            set(i) != item_keys or not all(isinstance(v, str) for v in i.values()) for i in items
        ):
            bad.append(key)
    metadata = body.get("Metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        bad.append("Metadata")
    if bad:
        raise Refusal(403, f"Invalid request field(s) - {', '.join(bad)}")


def check_attachments(attachments: list[dict[str, Any]]) -> None:
    for attachment in attachments:
        name = attachment.get("Name")
        if not isinstance(name, str) or not name:
            raise Refusal(300, "Attachment name is required.")
        if name.rsplit(".", 1)[-1].lower() in FORBIDDEN_EXTENSIONS:
            raise Refusal(411, f"Attachment '{name}' has a forbidden file type.")
        try:
            base64.b64decode(attachment.get("Content") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise Refusal(300, f"Attachment '{name}' content is not valid base64.") from None
        content_id = attachment.get("ContentID")
        if content_id is not None and not str(content_id).startswith("cid:"):
            raise Refusal(300, f"Attachment '{name}' ContentID must start with 'cid:'.")


def validate(body: Any, server: PostmarkServer) -> None:
    """Raise Refusal as Postmark would for this /email body."""
    check_types(body)
    senders = parse_list(body.get("From", ""), "From")
    if len(senders) != 1:
        raise Refusal(300, f"Invalid 'From' address: '{body.get('From', '')}'.")
    [sender] = senders
    if sender.rpartition("@")[2] not in server.sender_domains:
        raise Refusal(400, NOT_A_SIGNATURE.format(sender))
    recipients = []
    for field in ("To", "Cc", "Bcc"):
        recipients += parse_list(body.get(field, ""), field)
    parse_list(body.get("ReplyTo", ""), "ReplyTo")
    if not recipients:
        raise Refusal(300, "Zero recipients specified")
    if len(recipients) > MAX_RECIPIENTS:
        raise Refusal(300, f"Maximum of {MAX_RECIPIENTS} recipients allowed per email message")
    if not body.get("TextBody") and not body.get("HtmlBody"):
        raise Refusal(300, "Provide either email TextBody or HtmlBody or both.")
    check_attachments(body.get("Attachments", []))
    if inactive := [r for r in recipients if r in server.inactive]:
        raise Refusal(406, INACTIVE.format(", ".join(inactive)))


def _error(status: int, code: int, message: str) -> Reply:
    return Reply.json(
        status,
        {"ErrorCode": code, "Message": message},
        content_type="application/json; charset=utf-8",
    )


class PostmarkServer(StubServer):
    """POST /email. Modes: http_stub's; the redirect is a 307 to another host. Add addresses to
    `inactive` (suppressed: ErrorCode 406); From must be at one of `sender_domains`."""

    REDIRECT_TO = "http://127.0.0.1:9/email"

    def __init__(self, token: str = VALID_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.inactive: set[str] = set()
        self.sender_domains = {"example.com"}

    def failure(self, mode: str, request: Request) -> Reply:
        if mode == "401":
            has_token = bool(request.headers.get("X-Postmark-Server-Token"))
            return _error(401, 10, BAD_TOKEN if has_token else NO_TOKEN)
        if mode == "429":
            return _error(429, 429, "Rate limit exceeded.")
        return Reply(500, b"<html>Internal Server Error</html>")  # not JSON: never to be echoed

    def answer(self, request: Request, mode: str) -> Reply:
        if request.path != "/email":
            return Reply(404)
        token = request.headers.get("X-Postmark-Server-Token")
        if not token or token.lower() != self.token.lower():
            return self.failure("401", request)
        json_type = "application/json"
        if request.content_type() != json_type or request.headers["Accept"] != json_type:
            return Reply(415)
        if len(request.body) > MAX_BODY_BYTES:
            return Reply(413)
        try:
            body = json.loads(request.body)
        except ValueError:
            return _error(422, 402, "Invalid JSON")
        try:
            validate(body, self)
        except Refusal as refusal:
            return _error(422, refusal.code, refusal.message)
        message_id = str(uuid.uuid4())
        self.record(body, request, message_id)
        submitted = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        answer = {"To": body.get("To", ""), "SubmittedAt": submitted, "MessageID": message_id}
        return Reply.json(
            200,
            {**answer, "ErrorCode": 0, "Message": "OK"},
            content_type="application/json; charset=utf-8",
        )


postmark_server = stand_in_fixture(PostmarkServer, "postmark_server")
