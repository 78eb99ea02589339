"""One API client for every test and the bench: in process through Django's test client, or over
HTTP to a live server, with the same calls and the same answers.

    api = ApiClient.http(url, token)          # or ApiClient.django(client, token)
    response = api.post("/api/v1/emails", {...}, headers={"Idempotency-Key": "k"})
    response.status_code, response.json(), response["Content-Type"], response.content

A body that is str or bytes is sent as it is (for malformed JSON), anything else as JSON.
Every body received is kept in `bodies`, so a test can check a secret was never returned.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from email.message import Message
from urllib.parse import urlencode, urlsplit


class HttpResponse:
    """What a live server answered, shaped as Django's test responses are."""

    def __init__(self, status_code: int, headers: Message, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def __getitem__(self, name: str) -> str:
        value = self.headers[name]
        if value is None:
            raise KeyError(name)
        return value

    def json(self):
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status_code} {self.content[:300]!r}>"


class HttpTransport:
    """A new connection for each request (gunicorn's sync workers close it after each answer),
    so one client may be used from many threads."""

    def __init__(self, url: str, *, timeout: float = 60) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout

    def __call__(self, method: str, path: str, data: bytes | None, headers: dict) -> HttpResponse:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            answer = connection.getresponse()
            return HttpResponse(answer.status, answer.headers, answer.read())
        finally:
            connection.close()


class DjangoTransport:
    """Django's test client, in this process."""

    def __init__(self, client) -> None:
        self.client = client

    def __call__(self, method: str, path: str, data: bytes | None, headers: dict):
        content_type = headers.pop("Content-Type", "application/octet-stream")
        call = getattr(self.client, method.lower())
        if data is None:
            return call(path, headers=headers)
        return call(path, data, content_type=content_type, headers=headers)


class ApiClient:
    def __init__(self, transport, token: str | None = None, *, keep_bodies: bool = True) -> None:
        self.transport = transport
        self.token = token
        self.keep_bodies = keep_bodies  # off in the bench's load generator
        self.bodies: list[bytes] = []

    @classmethod
    def http(cls, url: str, token: str | None = None, *, timeout: float = 60, **options):
        return cls(HttpTransport(url, timeout=timeout), token, **options)

    @classmethod
    def django(cls, client, token: str | None = None) -> ApiClient:
        return cls(DjangoTransport(client), token)

    def with_token(self, token: str | None) -> ApiClient:
        """The same server, as another account (or none)."""
        return type(self)(self.transport, token, keep_bodies=self.keep_bodies)

    def request(self, method: str, path: str, body=None, *, headers: Mapping | None = None):
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else body
            if not isinstance(body, (str, bytes)):
                data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        response = self.transport(method.upper(), path, data, sent)
        if self.keep_bodies:
            self.bodies.append(response.content)
        return response

    def get(self, path: str, params: Mapping | None = None, *, headers: Mapping | None = None):
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body=None, *, headers: Mapping | None = None):
        return self.request("POST", path, {} if body is None else body, headers=headers)

    def patch(self, path: str, body=None, *, headers: Mapping | None = None):
        return self.request("PATCH", path, {} if body is None else body, headers=headers)

    def put(self, path: str, body=None, *, headers: Mapping | None = None):
        return self.request("PUT", path, {} if body is None else body, headers=headers)

    def delete(self, path: str, *, headers: Mapping | None = None):
        return self.request("DELETE", path, headers=headers)

    def assert_never_returned(self, *values: str) -> None:
        for value in values:
            assert all(value.encode() not in body for body in self.bodies), value
