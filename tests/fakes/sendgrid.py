"""A SendGrid v3 Mail Send stand-in on loopback: auth, validation, 202 + X-Message-Id, failures."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

VALID_KEY = "SG.test-key.stand-in"
# ok: validate and accept; 401/429/500: answer that; stall: read the request and never answer
# (until STALL_SECONDS or shutdown); drop: read the request and close the connection.
MODES = ("ok", "401", "429", "500", "stall", "drop")
STALL_SECONDS = 5.0
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SendGridServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _answer(self, status: int, error: str = "", headers: dict | None = None) -> None:
        body = json.dumps({"errors": [_error(error)]}).encode() if error else b""
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server, mode = self.server, self.server.mode
        with server.lock:
            server.requests.append(raw)
        if self.path != "/v3/mail/send":
            return self._answer(404, "not found")
        if mode in ("stall", "drop"):  # the request arrived in full; never answer it
            if mode == "stall":
                server.stopping.wait(STALL_SECONDS)
            self.close_connection = True
            return None
        if mode == "401" or self.headers.get("Authorization") != f"Bearer {server.api_key}":
            return self._answer(401, BAD_KEY)
        if mode == "429":
            reset = str(int(time.time()) + 60)
            limits = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
            return self._answer(429, "too many requests", {**limits, "X-RateLimit-Reset": reset})
        if mode == "500":
            return self._answer(500, "Internal server error")
        if self.headers.get_content_type() != "application/json":
            return self._answer(415, "Content-Type should be application/json.")
        if len(raw) > MAX_BODY_BYTES:
            return self._answer(413, "The JSON payload you have included is too large.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._answer(400, "Bad Request")
        if errors := validate(body):
            return self._send(400, json.dumps({"errors": errors}).encode())
        message_id = secrets.token_urlsafe(16)
        with server.lock:
            server.messages.append(
                {**body, "_message_id": message_id, "_headers": dict(self.headers.items())}
            )
        return self._send(202, b"", {"X-Message-Id": message_id})


class SendGridServer(ThreadingHTTPServer):
    """POST /v3/mail/send on 127.0.0.1 and a free port. Set `mode` to one of MODES."""

    daemon_threads = True

    def __init__(self, api_key: str = VALID_KEY) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api_key = api_key
        self.mode = "ok"
        self.messages: list[dict[str, Any]] = []  # accepted payloads, with _message_id, _headers
        self.requests: list[bytes] = []  # every raw body that arrived, accepted or not
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_port}"

    def start(self) -> SendGridServer:
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


@contextmanager
def running_sendgrid(api_key: str = VALID_KEY) -> Iterator[SendGridServer]:
    server = SendGridServer(api_key).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sendgrid_server() -> Iterator[SendGridServer]:
    """A started stand-in in mode "ok" accepting VALID_KEY; stopped after the test."""
    with running_sendgrid() as server:
        yield server
