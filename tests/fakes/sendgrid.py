"""A SendGrid v3 Mail Send stand-in on loopback (tests/fakes/http_stub.py): Bearer auth, the
documented validation, 202 + X-Message-Id, and SendGrid's {"errors": [...]} bodies."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from typing import Any

from tests.fakes.http_stub import Reply, Request, StubServer, stand_in_fixture

VALID_KEY = "SG.test-key.stand-in"
MAX_BODY_BYTES = 20 * 1024 * 1024  # SendGrid's documented limit for the whole message
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
RESERVED_HEADERS = set(
    "x-sg-id x-sg-eid received dkim-signature content-type content-transfer-encoding "
    "to from subject reply-to cc bcc".split()
)
TEXT_ORDERS = ([], ["text/plain"], ["text/html"], ["text/plain", "text/html"])
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")

# Messages as SendGrid's error reference words them.
NO_PERSONALIZATION = "You must have at least one personalization."
TOO_MANY = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
NO_TO = "The to parameter is required for all personalization objects."
BAD_ADDRESS = "Does not contain a valid address."
DUPLICATE = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. "
    "We found the first duplicate instance of [{}] in the personalizations.{}.{} field."
)
NO_FROM = "The from object must be provided for every email send."
BAD_FROM = "The from email does not contain a valid address."
BOTH_REPLY_TO = "The reply_to and reply_to_list fields cannot be used together."
BAD_REPLY_TO = "The reply_to email does not contain a valid address."
NO_SUBJECT = (
    "The subject is required. You can get around this requirement if you use a template with "
    "a subject defined or if every personalization has a subject defined."
)
NO_CONTENT = (
    "Unless a valid template_id is provided, the content parameter is required. There must be "
    "at least one defined content block."
)
EMPTY = "The content {} must be a string at least one character in length."
CONTENT_ORDER = "If present, text/plain must be first, followed by text/html, then other content."
NOT_BASE64 = "The attachment content must be base64 encoded."
NO_FILENAME = "The attachment filename parameter is required."
BAD_KEY = "The provided authorization grant is invalid, expired, or revoked"
NO_CONTENT_ID = "The content_id parameter is required if disposition is set to inline."


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP + field if field else None}


def _email_ok(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(_EMAIL.match(str(obj.get("email") or "")))


def validate(body: Any) -> list[dict[str, Any]]:
    """The documented 400 checks of POST /v3/mail/send that a gateway can trip over."""
    if not isinstance(body, dict):
        return [_error("Bad Request")]
    errors: list[dict[str, Any]] = []

    def add(message: str, field: str) -> None:
        errors.append(_error(message, field))

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        add(NO_PERSONALIZATION, "personalizations")
        personalizations = []
    total = 0
    for i, item in enumerate(personalizations):
        item = item if isinstance(item, dict) else {}
        if not item.get("to"):
            add(NO_TO, f"personalizations.{i}.to")
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            for j, recipient in enumerate(item.get(kind) or []):
                total += 1
                if not _email_ok(recipient):
                    add(BAD_ADDRESS, f"personalizations.{i}.{kind}.{j}.email")
                    continue
                if recipient["email"].lower() in seen:
                    add(DUPLICATE.format(recipient["email"], i, kind), f"personalizations.{i}")
                seen.add(recipient["email"].lower())
    if total > 1000:
        add(TOO_MANY, "personalizations")
    if not isinstance(body.get("from"), dict) or not body["from"].get("email"):
        add(NO_FROM, "from")
    elif not _email_ok(body["from"]):
        add(BAD_FROM, "from.email")
    if "reply_to" in body and "reply_to_list" in body:
        add(BOTH_REPLY_TO, "reply_to_list")
    replies = [body["reply_to"]] if "reply_to" in body else body.get("reply_to_list") or []
    for j, reply in enumerate(replies):
        if not _email_ok(reply):
            add(BAD_REPLY_TO, f"reply_to_list.{j}.email")
    if not body.get("subject") and not (
        personalizations and all(isinstance(p, dict) and p.get("subject") for p in personalizations)
    ):
        add(NO_SUBJECT, "subject")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        add(NO_CONTENT, "content")
        content = []
    types = []
    for i, part in enumerate(content):
        part = part if isinstance(part, dict) else {}
        for key in ("type", "value"):
            if not isinstance(part.get(key), str) or not part[key]:
                add(EMPTY.format(key), f"content.{i}.{key}")
        types.append(part.get("type"))
    leading = [t for t in types if t in ("text/plain", "text/html")]
    if leading != types[: len(leading)] or leading not in TEXT_ORDERS:
        add(CONTENT_ORDER, "content")
    for i, attachment in enumerate(body.get("attachments") or []):
        attachment = attachment if isinstance(attachment, dict) else {}
        try:
            base64.b64decode(attachment.get("content") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            add(NOT_BASE64, f"attachments.{i}.content")
        if not attachment.get("filename"):
            add(NO_FILENAME, f"attachments.{i}.filename")
        if attachment.get("disposition") == "inline" and not attachment.get("content_id"):
            add(NO_CONTENT_ID, f"attachments.{i}.content_id")
    for name, value in (body.get("headers") or {}).items():
        if name.lower() in RESERVED_HEADERS:
            add(f"The header {name} is reserved and may not be set.", "headers")
        elif not isinstance(value, str):
            add("Invalid type. Expected: string.", f"headers.{name}")
    return errors


def _errors(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(status, {"errors": [_error(message)]}, headers)


class SendGridServer(StubServer):
    """POST /v3/mail/send. Modes: http_stub's, the redirect to SendGrid's EU host."""

    REDIRECT_TO = "https://api.eu.sendgrid.com{path}"

    def __init__(self, api_key: str = VALID_KEY) -> None:
        super().__init__()
        self.api_key = api_key

    def failure(self, mode: str, request: Request) -> Reply:
        if mode == "401":
            return _errors(401, BAD_KEY)
        if mode == "429":
            reset = str(int(time.time()) + 60)
            limits = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
            return _errors(429, "too many requests", {**limits, "X-RateLimit-Reset": reset})
        return _errors(500, "Internal server error")

    def answer(self, request: Request, mode: str) -> Reply:
        if request.path != "/v3/mail/send":
            return _errors(404, "not found")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.failure("401", request)
        if request.content_type() != "application/json":
            return _errors(415, "Content-Type should be application/json.")
        if len(request.body) > MAX_BODY_BYTES:
            return _errors(413, "The JSON payload you have included is too large.")
        try:
            body = json.loads(request.body)
        except ValueError:
            return _errors(400, "Bad Request")
        if errors := validate(body):
            return Reply.json(400, {"errors": errors})
        message_id = secrets.token_urlsafe(16)
        self.record(body, request, message_id)
        return Reply(202, headers={"X-Message-Id": message_id})


sendgrid_server = stand_in_fixture(SendGridServer, "sendgrid_server")
