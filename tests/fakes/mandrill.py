"""A Mandrill (Mailchimp Transactional API 1.0) messages/send-raw stand-in on loopback
(tests/fakes/http_stub.py).

It follows Mailchimp's published API description (github.com/mailchimp/
mailchimp-client-lib-codegen, spec/transactional.json and transactional.openapi.json:
POST /messages/send-raw, body {key, raw_message, from_email?, from_name?, to?: [string],
async?, ...}; answer a list of {email, status: sent|queued|scheduled|rejected|invalid,
reject_reason, _id}; errors {"status": "error", "code", "name", "message"}) and the API docs
at mandrillapp.com/api/docs/messages.html, where errors come with HTTP 500 (Invalid_Key as
code -1; `error_status` = 401 gives the newer OpenAPI's status instead). Metadata in raw mail is
the X-MC-Metadata header, a flat JSON object of at most 200 bytes ("Using Custom Message
Metadata"); the stand-in refuses a bad one as a ValidationError, which is stricter than
documented, so a bug on our side shows.

Checks: the key in the body (none: ValidationError; wrong: Invalid_Key), a JSON body, a
non-empty raw_message that parses as MIME with a From (or from_email given), every base64 part
decoding strictly, from_email's syntax, `to` as a list of strings, `async` a boolean. Each
recipient is answered on its own: bad syntax "invalid", one in `rejects` "rejected" with its
reason, others "sent" (or "queued" when async or more than ten, as Mandrill does)."""

from __future__ import annotations

import base64
import binascii
import email.message
import email.parser
import email.policy
import json
import re
import secrets
from email.utils import getaddresses
from typing import Any

from tests.fakes.http_stub import Reply, Request, StubServer, stand_in_fixture

VALID_KEY = "md-stand-in-key_0123456789"
PATHS = ("/api/1.0/messages/send-raw", "/api/1.0/messages/send-raw.json")
MAX_METADATA_BYTES = 200
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")

ERRORS = {  # name -> (code, message), as Mandrill words them
    "Invalid_Key": (-1, "Invalid API key"),
    "ValidationError": (-2, "Validation error: {}"),
    "GeneralError": (-1, "An unknown error occurred processing your request. Please try again."),
    "PaymentRequired": (10, "This feature is only available for accounts with a positive balance."),
    "RequestLimitExceeded": (429, "Too Many Requests attempted recently"),
}


def error_body(name: str, detail: Any = None) -> bytes:
    code, message = ERRORS[name]
    if detail is not None:
        message = message.format(json.dumps(detail))
    return json.dumps({"status": "error", "code": code, "name": name, "message": message}).encode()


def address_ok(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL.match(value))


def check_mime(mime: email.message.EmailMessage, body: dict) -> dict[str, str]:
    """What Mandrill would refuse in the document itself (field -> problem)."""
    problems = {}
    if not mime.get("From") and not body.get("from_email"):
        problems["raw_message"] = "No From address found in the message"
    for part in mime.walk():
        if part.is_multipart() or part.get("Content-Transfer-Encoding", "").lower() != "base64":
            continue
        try:
            base64.b64decode("".join(part.get_payload().split()), validate=True)
        except (binascii.Error, ValueError):
            problems["raw_message"] = "A base64 part does not decode"
    if (given := mime.get("X-MC-Metadata")) is not None:
        try:
            metadata = json.loads(str(given))
        except ValueError:
            metadata = None
        flat = isinstance(metadata, dict) and not any(
            isinstance(v, (dict, list)) for v in metadata.values()
        )
        if not flat or len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
            problems["X-MC-Metadata"] = "must be a flat JSON object of at most 200 bytes"
    return problems


def validate(body: dict) -> tuple[dict[str, str], email.message.EmailMessage | None]:
    """(field -> problem, the parsed MIME) for a send-raw body whose key was accepted."""
    problems: dict[str, str] = {}
    raw = body.get("raw_message")
    mime = None
    if not isinstance(raw, str) or not raw.strip():
        problems["raw_message"] = "Please enter a value"
    else:
        mime = email.parser.Parser(policy=email.policy.default).parsestr(raw)
        problems.update(check_mime(mime, body))
    if "from_email" in body and not address_ok(body["from_email"]):
        problems["from_email"] = "Please enter a valid email address"
    if "from_name" in body and not isinstance(body["from_name"], str):
        problems["from_name"] = "Please enter a string"
    to = body.get("to", [])
    if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
        problems["to"] = "Please enter an array of strings"
    if "async" in body and not isinstance(body["async"], bool):
        problems["async"] = "Please enter a boolean"
    return problems, mime


class MandrillServer(StubServer):
    """POST {url}/messages/send-raw. Modes: http_stub's, and "payment" (PaymentRequired); the
    redirect is a 307 elsewhere. Set `rejects` to {address: reject_reason} for recipients on
    Mandrill's rejection list, `error_status` to the status errors come with."""

    EXTRA_FAILURES = ("payment",)
    URL_PATH = "/api/1.0"
    REDIRECT_TO = "https://mandrillapp.example/api/1.0/"

    def __init__(self, api_key: str = VALID_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.error_status = 500  # Mandrill's own; 401 etc. as the newer OpenAPI describes
        self.rejects: dict[str, str] = {}  # keys in lower case
        # self.messages: answered bodies, with _results (each recipient's), _mime, _headers

    def _error(self, name: str, detail: Any = None, status: int | None = None) -> Reply:
        return Reply(
            status or self.error_status,
            error_body(name, detail),
            {"Content-Type": "application/json"},
        )

    def failure(self, mode: str, request: Request) -> Reply:
        if mode == "429":
            return self._error("RequestLimitExceeded", status=429)
        names = {"401": "Invalid_Key", "500": "GeneralError", "payment": "PaymentRequired"}
        return self._error(names[mode])

    def accepted_ids(self) -> list[str]:
        """Per message, the _id of its first recipient sent or queued: what a sender reports."""
        ids = []
        with self.lock:
            for message in self.messages:
                sent = [r["_id"] for r in message["_results"] if r["status"] in ("sent", "queued")]
                ids += sent[:1]
        return ids

    def answer(self, request: Request, mode: str) -> Reply:
        if request.path not in PATHS:
            return Reply.json(404, {"status": "error", "code": -1, "name": "Unknown_Method"})
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("key"):
            return self._error("ValidationError", {"key": "You must specify a key value"})
        if body["key"] != self.api_key:
            return self._error("Invalid_Key")
        if request.content_type() != "application/json":
            return self._error("ValidationError", {"body": "must be JSON"})
        problems, mime = validate(body)
        if problems:
            return self._error("ValidationError", problems)
        recipients = body.get("to") or [
            address for _, address in getaddresses(mime.get_all("To", []) + mime.get_all("Cc", []))
        ]
        queued = body.get("async") is True or len(recipients) > 10
        results = []
        for address in recipients:
            if not address_ok(address):
                status, reason = "invalid", None
            elif address.lower() in self.rejects:
                status, reason = "rejected", self.rejects[address.lower()]
            else:
                status, reason = ("queued" if queued else "sent"), None
            entry = {"email": address, "status": status, "reject_reason": reason}
            results.append({**entry, "_id": secrets.token_hex(16)})
        self.record({**body, "_results": results, "_mime": mime}, request)
        return Reply.json(200, results)


mandrill_server = stand_in_fixture(MandrillServer, "mandrill_server")
