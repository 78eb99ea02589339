"""A Mailgun stand-in on loopback (tests/fakes/http_stub.py): POST /v3/{domain}/messages.mime as
Mailgun documents it.

It follows Mailgun's API reference, "Send an email in MIME format"
(documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/
post-v3--domain-name--messages-mime): Basic auth with the user "api" and the API key as its
password; a multipart/form-data body with `to` (required; one or more, each may list addresses
separated by commas and use the "Bob <bob@host>" form) and `message` (required, sent as a file
upload: the MIME); send options (o:, h:, v:, t:) limited to 16 KB in total; at most 1000
recipients; 200 {"id": "<...@domain>", "message": "Queued. Thank you."}. Errors as Mailgun gives
them ("API Response Codes", documentation.mailgun.com/docs/mailgun/quickstart-guide/responses,
and "Sending Messages" in the user manual): 400 {"message": "..."} with its own wording ("to
parameter is not a valid address. please check documentation"), 401 with the plain text
"Forbidden" for a wrong key, 404 {"message": "Domain not found: <domain>"} for a domain the
account doesn't have, and a 404 without JSON for a path that isn't an endpoint; 429 and 500 with
{"message": ...}. Messages over Mailgun's 25 MB limit get a 413.

The message id is minted here in Mailgun's shape (<timestamp.hex@domain>)."""

from __future__ import annotations

import base64
import email.policy
import re
import secrets
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses

from tests.fakes.http_stub import Reply, Request, StubServer, stand_in_fixture

VALID_KEY = "key-0123456789abcdef-stand-in"
DOMAIN = "mg.example.com"
MAX_BODY_BYTES = 25 * 1024 * 1024  # Mailgun's documented maximum message size
MAX_RECIPIENTS = 1000
MAX_OPTIONS_BYTES = 16 * 1024
_PATH = re.compile(r"^/v3/([^/]+)/messages\.mime$")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")

# Mailgun's own wording.
QUEUED = "Queued. Thank you."
FORBIDDEN = "Forbidden"
DOMAIN_NOT_FOUND = "Domain not found: {}"
NO_TO = "to parameter is missing"
BAD_TO = "to parameter is not a valid address. please check documentation"
NO_MESSAGE = "message parameter is missing"
NOT_A_FILE = "'message' parameter is not a file"
NO_FROM = "from parameter is missing"
TOO_MANY = f"Too many recipients; max is {MAX_RECIPIENTS}"
OPTIONS_TOO_LARGE = (
    "Send options (parameters starting with o:, h:, v:, or t:) are limited to 16 kB total"
)
NOT_FORM = "Content-Type must be multipart/form-data or application/x-www-form-urlencoded"


class FormError(ValueError):
    """The body is not well-formed multipart/form-data."""


def parse_form(body: bytes, content_type: str) -> list[tuple[str, str | None, Message, bytes]]:
    """(name, filename, part headers, data) of each part, strictly by RFC 7578: a form part
    that a lenient parser would mend is an error here, so a framing bug on our side shows."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise FormError(NOT_FORM)
    delimiter = b"\r\n--" + boundary.encode()
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 3 or chunks[0] or not chunks[-1].startswith(b"--"):
        raise FormError("malformed multipart body")
    parts = []
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or b"\r\n\r\n" not in chunk:
            raise FormError("malformed multipart part")
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if headers.get_content_disposition() != "form-data" or not isinstance(name, str):
            raise FormError("a part without Content-Disposition: form-data; name=...")
        filename = headers.get_param("filename", header="content-disposition")
        parts.append((name, filename if isinstance(filename, str) else None, headers, data))
    return parts


def recipients(values: list[str]) -> list[str] | None:
    """Every address the `to` values name, or None if one is not a valid address."""
    found = []
    for _name, address in getaddresses(values):
        if not _EMAIL.match(address):
            return None
        found.append(address)
    return found


def validate(parts: list[tuple[str, str | None, Message, bytes]]) -> tuple[str, dict]:
    """Mailgun's 400 checks for messages.mime: ("", accepted message) or (error, {})."""
    fields: dict[str, list[str]] = {}
    files = {}
    for name, filename, headers, data in parts:
        if filename is None:
            fields.setdefault(name, []).append(data.decode("utf-8"))
        else:
            files[name] = (filename, headers.get_content_type(), data)
    if "message" not in files:
        return (NOT_A_FILE if "message" in fields else NO_MESSAGE), {}
    if not fields.get("to"):
        return NO_TO, {}
    to = recipients(fields["to"])
    if to is None:
        return BAD_TO, {}
    if len({a.lower() for a in to}) > MAX_RECIPIENTS:
        return TOO_MANY, {}
    options = {k: v for k, vs in fields.items() if k[:2] in ("o:", "h:", "v:", "t:") for v in vs}
    if sum(len(k.encode()) + len(v.encode()) for k, v in options.items()) > MAX_OPTIONS_BYTES:
        return OPTIONS_TOO_LARGE, {}
    filename, file_type, raw = files["message"]
    mime = BytesParser(policy=email.policy.default).parsebytes(raw)
    if not mime.get("From"):
        return NO_FROM, {}
    accepted = {
        "to": fields["to"],
        "recipients": to,
        "variables": {k[2:]: v for k, v in options.items() if k.startswith("v:")},
        "fields": fields,
        "filename": filename,
        "file_type": file_type,
        "message": raw,
        "mime": mime,
    }
    return "", accepted


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(status, {"message": message}, headers)


class MailgunServer(StubServer):
    """Mailgun's messages.mime for one sending domain. Modes: http_stub's; the redirect is
    Mailgun's 302 to its EU host."""

    REDIRECT_STATUS = 302
    REDIRECT_TO = "https://api.eu.mailgun.net{path}"

    def __init__(self, api_key: str = VALID_KEY, domain: str = DOMAIN) -> None:
        super().__init__()
        self.api_key = api_key
        self.domain = domain

    def failure(self, mode: str, request: Request) -> Reply:
        if mode == "401":
            return Reply(401, FORBIDDEN.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        if mode == "429":
            return _json(429, "Too many requests", {"Retry-After": "60"})
        return _json(500, "Internal Server Error")

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        try:
            user, _, key = base64.b64decode(token, validate=True).decode().partition(":")
        except ValueError:
            return False
        return scheme.lower() == "basic" and user == "api" and key == self.api_key

    def answer(self, request: Request, mode: str) -> Reply:
        if not self._authorized(request):
            return self.failure("401", request)
        match = _PATH.match(request.path)
        if not match:
            return Reply(404, b"<h1>Not Found</h1>", {"Content-Type": "text/html"})
        if match[1] != self.domain:
            return _json(404, DOMAIN_NOT_FOUND.format(match[1]))
        if len(request.body) > MAX_BODY_BYTES:
            return _json(413, "Message size exceeds the limit")
        try:
            parts = parse_form(request.body, request.headers.get("Content-Type") or "")
        except FormError as exc:
            return _json(400, str(exc))
        error, accepted = validate(parts)
        if error:
            return _json(400, error)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        message_id = f"<{stamp}.{secrets.token_hex(8)}@{self.domain}>"
        self.record(accepted, request, message_id)
        return Reply.json(200, {"id": message_id, "message": QUEUED})


mailgun_server = stand_in_fixture(MailgunServer, "mailgun_server")
