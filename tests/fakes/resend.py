"""A Resend POST /emails stand-in on loopback (tests/fakes/http_stub.py), as Resend documents it:

- https://resend.com/docs/api-reference/emails/send-email: the fields (from and to required, to at
  most 50, "Name <addr>" strings or lists of them, base64 attachment content, tag names and values
  of ASCII letters, digits, _ and -), the Idempotency-Key header, 200 {"id": "<uuid>"};
- https://resend.com/docs/api-reference/errors: {"statusCode", "name", "message"} and each name's
  status (401 missing_api_key, 403 invalid_api_key, 403 validation_error for an unverified domain,
  422 validation_error / missing_required_field / invalid_attachment, 429 rate_limit_exceeded /
  daily_quota_exceeded, 409 for idempotency, 500 application_error);
- https://resend.com/docs/dashboard/emails/idempotency-keys: a repeat with the same key and body
  answers the first response without sending again, a changed body answers 409
  invalid_idempotent_request, one while the first is in progress 409
  concurrent_idempotent_requests;
- https://resend.com/docs/api-reference/rate-limit: ratelimit-* and retry-after on a 429.

Field errors the reference doesn't word are worded as Resend answers them in practice
("Invalid `to` field. ...", "Missing `subject` field.") or, failing that, plainly."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import uuid
from typing import Any

from tests.fakes.http_stub import STALL_LIMIT, Reply, Request, StubServer, stand_in_fixture

VALID_KEY = "re_standin_0123456789"
MAX_BODY_BYTES = 40 * 1024 * 1024  # attachments at most 40 MB per email, after base64
MAX_RECIPIENTS = 50
MAX_KEY_LENGTH = 256
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_NAMED = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<addr>[^<>]+)>$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

# Answers as Resend words them.
BAD_ADDRESS = (
    "Invalid `{}` field. The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)
MISSING = "Missing `{}` field."
TOO_MANY = "Too many recipients in the `to` field. The maximum is 50."
NO_ATTACHMENT_CONTENT = "Attachment must have either a `content` or `path`."
NOT_BASE64 = "The `content` of attachment {} must be a Base64 string."
BAD_TAG = "Tags may only contain ASCII letters (a-z, A-Z), numbers (0-9), underscores or dashes."
BAD_HEADERS = "The `headers` field must be an object of string values."
UNVERIFIED = "The {} domain is not verified. Please, add and verify your domain."
CANNED = {
    "401": (401, "validation_error", "API key is invalid"),
    "429": (
        429,
        "rate_limit_exceeded",
        "Too many requests. Please limit the number of requests per second. Or contact support "
        "to increase rate limit.",
    ),
    "quota": (429, "daily_quota_exceeded", "You have exceeded your daily email sending quota."),
    "500": (500, "application_error", "An unexpected error occurred."),
}
CONCURRENT = "There is another request in progress with the same idempotency key."
CHANGED = (
    "This idempotency key has been used with this HTTP method and endpoint within the last 24 "
    "hours, but the request body was modified and doesn't match the original request."
)


def address_ok(value: Any) -> bool:
    """`addr` or `Name <addr>`, the address ASCII with a dotted domain."""
    if not isinstance(value, str):
        return False
    named = _NAMED.match(value.strip())
    addr = named["addr"] if named else value.strip()
    return addr.isascii() and bool(_EMAIL.match(addr))


def _addresses(body: dict, field: str) -> list[Any]:
    value = body.get(field)
    return [value] if isinstance(value, str) else value if isinstance(value, list) else [None]


class Refusal(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.answer = (status, name, message)


def _check_addresses(body: dict) -> None:
    for field in ("from", "to"):
        if not body.get(field):
            raise Refusal(422, "missing_required_field", MISSING.format(field))
    if not address_ok(body["from"]):
        raise Refusal(422, "validation_error", BAD_ADDRESS.format("from"))
    if len(_addresses(body, "to")) > MAX_RECIPIENTS:
        raise Refusal(422, "validation_error", TOO_MANY)
    for field in ("to", "cc", "bcc", "reply_to"):
        if field in body and not all(address_ok(a) for a in _addresses(body, field)):
            raise Refusal(422, "validation_error", BAD_ADDRESS.format(field))


def _check_attachments(attachments: Any) -> None:
    for i, attachment in enumerate(attachments if isinstance(attachments, list) else [None]):
        attachment = attachment if isinstance(attachment, dict) else {}
        if not attachment.get("content") and not attachment.get("path"):
            raise Refusal(422, "invalid_attachment", NO_ATTACHMENT_CONTENT)
        try:
            base64.b64decode(attachment.get("content") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise Refusal(422, "validation_error", NOT_BASE64.format(i)) from None
        content_id = attachment.get("content_id")
        if content_id is not None and not (isinstance(content_id, str) and len(content_id) < 128):
            raise Refusal(422, "validation_error", "A `content_id` must be under 128 characters.")


def validate(body: Any) -> None:
    """The documented checks of POST /emails; raise Refusal with Resend's answer."""
    if not isinstance(body, dict):
        raise Refusal(422, "validation_error", "The request body must be a JSON object.")
    _check_addresses(body)
    if not isinstance(body.get("subject"), str) or not body["subject"]:
        raise Refusal(422, "missing_required_field", MISSING.format("subject"))
    if not any(isinstance(body.get(f), str) and body[f] for f in ("html", "text")):
        raise Refusal(422, "missing_required_field", MISSING.format("html` or `text"))
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise Refusal(422, "validation_error", BAD_HEADERS)
    if "attachments" in body:
        _check_attachments(body["attachments"])
    for tag in body.get("tags") or []:
        tag = tag if isinstance(tag, dict) else {}
        if not all(isinstance(tag.get(k), str) and _TAG.match(tag[k]) for k in ("name", "value")):
            raise Refusal(422, "validation_error", BAD_TAG)


def _error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(status, {"statusCode": status, "name": name, "message": message}, headers)


class ResendServer(StubServer):
    """POST /emails. Modes: http_stub's (the redirect a 307 to api.resend.com; stall and drop
    after the email was sent), "quota" (daily_quota_exceeded), and "hold": take the idempotency
    key, set `holding`, then wait for `release` before going on, as a request still in progress
    at Resend. Set `verified_domains` to refuse senders elsewhere as Resend does (None: every
    domain)."""

    EXTRA_FAILURES = ("quota",)
    EXTRA_MODES = ("hold",)
    REDIRECT_TO = "https://api.resend.com/emails"
    ANSWER_BEFORE_WITHHOLDING = True
    ID_FIELD = "_id"

    def __init__(self, api_key: str = VALID_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.verified_domains: set[str] | None = None
        self.replays = 0  # repeats answered from the idempotency store, not sent again
        self.keys: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> {"body", "id"}
        self.holding = threading.Event()  # a request in mode "hold" has taken its key

    def failure(self, mode: str, request: Request) -> Reply:
        status, name, message = CANNED[mode]
        if status != 429:
            return _error(status, name, message)
        limits = {"ratelimit-limit": "2", "ratelimit-remaining": "0"}
        return _error(status, name, message, {**limits, "ratelimit-reset": "1", "retry-after": "1"})

    def answer(self, request: Request, mode: str) -> Reply:
        try:
            return Reply.json(200, {"id": self._accept(request, mode)})
        except Refusal as refusal:
            return _error(*refusal.answer)

    def _accept(self, request: Request, mode: str) -> str:
        """Authenticate, validate and record one email; its id, or Refusal."""
        if request.path != "/emails":
            raise Refusal(404, "not_found", "The requested endpoint does not exist.")
        authorization = request.headers.get("Authorization")
        if not authorization:
            raise Refusal(401, "missing_api_key", "Missing API key in the authorization header.")
        if authorization != f"Bearer {self.api_key}":
            raise Refusal(403, "invalid_api_key", "API key is invalid.")
        if len(request.body) > MAX_BODY_BYTES:
            raise Refusal(422, "validation_error", "The email is larger than 40 MB.")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise Refusal(400, "validation_error", "The body is not valid JSON.") from None
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise Refusal(
                400,
                "invalid_idempotency_key",
                "Idempotency keys, if present, must have between 1 and 256 characters.",
            )
        if key and (replayed := self.begin(key, body)):
            return replayed
        try:
            if mode == "hold":
                self.holding.set()
                self.release.wait(STALL_LIMIT)
            validate(body)
            self.check_domain(body["from"])
        except Refusal:
            self.forget(key)
            raise
        message_id = str(uuid.uuid4())
        with self.lock:  # the email and its key's id at once: a repeat sees both or neither
            self.record(body, request, message_id)
            if key:
                self.keys[key]["id"] = message_id
        return message_id

    def begin(self, key: str, body: Any) -> str | None:
        """Take the key for this body; the first id when it was sent already, else None."""
        canonical = json.dumps(body, sort_keys=True)
        with self.lock:
            entry = self.keys.get(key)
            if entry is None:
                self.keys[key] = {"body": canonical, "id": None}
                return None
            if entry["body"] != canonical:
                raise Refusal(409, "invalid_idempotent_request", CHANGED)
            if entry["id"] is None:
                raise Refusal(409, "concurrent_idempotent_requests", CONCURRENT)
            self.replays += 1
            return entry["id"]

    def forget(self, key: str | None) -> None:
        """A refused request leaves its key free: only a sent email holds one."""
        with self.lock:
            self.keys.pop(key or "", None)

    def check_domain(self, sender: str) -> None:
        domain = sender.rstrip(">").rpartition("@")[2].lower()
        if self.verified_domains is not None and domain not in self.verified_domains:
            raise Refusal(403, "validation_error", UNVERIFIED.format(domain))


resend_server = stand_in_fixture(ResendServer, "resend_server")
