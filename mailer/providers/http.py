"""The base of every provider that speaks an HTTP API (SendGrid, Mailgun, Mandrill, Postmark,
Resend): one keep-alive client to the configured origin (mailer.providers.httpclient: checked
addresses, no redirects, capped answers), one POST per message, and one way to read a refusal."""

from __future__ import annotations

import json
import logging
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .base import ConfigurationError, Provider, ProviderError, error_for_http_status
from .httpclient import HttpAnswer, HttpClient
from .net import Deadline, sanitize

logger = logging.getLogger("mailer.providers")


_DELTA_SECONDS = re.compile(r"\d{1,12}")


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """The wait a Retry-After header asks for, in seconds (RFC 9110 10.2.3): delta-seconds, or
    an HTTP-date less the current time. None when absent, unreadable, or not in the future (a
    negative number, a date already past): the caller then waits its default. Not capped here:
    the cap is failover's (THROTTLE_MAX_SECONDS)."""
    text = (value or "").strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:  # HTTP-dates are GMT; a bare one is malformed
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds > 0 else None


def is_base_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        return False


def clean_key(kind: str, name: str, value: Any) -> str:
    """A credential as it may go into a header: present, one line."""
    key = str(value or "").strip()
    if not key:
        raise ConfigurationError(f"{kind} provider is missing the setting '{name}'", setting=name)
    if any(c in key for c in "\r\n\0"):
        raise ConfigurationError(f"{kind} setting '{name}' is malformed", setting=name)
    return key


def json_errors(body: bytes, *paths: tuple[str, ...]) -> str:
    """The first of `paths` (keys into a JSON object; "*" maps over a list) that holds text,
    sanitized. Never the raw body: a host that is not the provider could fill it with anything."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        return ""
    for path in paths:
        found = _walk(data, path)
        if found:
            return sanitize("; ".join(found))
    return ""


def _walk(data: Any, path: tuple[str, ...]) -> list[str]:
    if not path:
        if isinstance(data, (str, int, float)) and not isinstance(data, bool) and str(data):
            return [str(data)]
        return []
    key, rest = path[0], path[1:]
    if key == "*":
        if not isinstance(data, list):
            return []
        return [text for item in data for text in _walk(item, rest)]
    if isinstance(data, dict) and key in data:
        return _walk(data[key], rest)
    return []


class HttpProvider(Provider):
    """A provider over one HTTP API. Subclasses set `default_base_url`, build the request in
    `prepare` (returning an `HttpRequest`), name their auth in `auth_headers`, and read answers
    in `message_id` and `error_detail`; `refusal` maps a non-2xx answer (override to read a
    provider's own error codes)."""

    default_base_url: ClassVar[str] = ""
    base_url_setting: ClassVar[str] = "api_url"

    def __init__(self, *, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Accept a trailing slash or the API's version suffix: the paths are ours.
        self.base_url = (base_url or self.default_base_url).strip().rstrip("/")

    def describe(self) -> str:
        return f"{self.kind} {self.base_url}"

    def auth_headers(self) -> dict[str, str]:
        """The credential headers; raise ConfigurationError when a secret is missing."""
        raise NotImplementedError

    def build_client(self) -> HttpClient:
        self._auth = self.auth_headers()
        if not is_base_url(self.base_url):
            raise ConfigurationError(
                f"{self.kind} setting '{self.base_url_setting}' must be an http(s) URL, "
                f"not {self.base_url!r}",
                setting=self.base_url_setting,
            )
        return HttpClient(
            self.base_url,
            label=self.describe(),
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            allow_private=self.allow_private_hosts,
        )

    def transmit(self, prepared: HttpRequest, deadline: Deadline) -> str:
        client = self.client()
        headers = {
            "Accept": "application/json",
            "User-Agent": "emailservice",
            "Content-Type": prepared.content_type,
            **self._auth,
            **prepared.headers,
        }
        answer = client.request(
            "POST", prepared.path, body=prepared.body, headers=headers, deadline=deadline
        )
        if not 200 <= answer.status < 300:
            raise self.refusal(answer)
        message_id = sanitize(self.message_id(answer), 255)
        if not message_id:
            logger.warning("%s accepted a message without a message id", self.describe())
        return message_id

    def refusal(self, answer: HttpAnswer) -> ProviderError:
        status = answer.status
        if 300 <= status < 400:
            return ConfigurationError(
                f"{self.describe()} answered HTTP {status} with a redirect, which is never "
                f"followed; check the {self.base_url_setting} setting",
                setting=self.base_url_setting,
            )
        detail = self.error_detail(answer.body)
        retry_after = answer.headers.get("Retry-After")
        if status == 429 and retry_after:
            unit = " s" if _DELTA_SECONDS.fullmatch(retry_after.strip()) else ""
            detail = f"{detail} (retry after {sanitize(retry_after, 40)}{unit})".strip()
        return error_for_http_status(status, detail, retry_after=retry_after_seconds(retry_after))

    def message_id(self, answer: HttpAnswer) -> str:
        raise NotImplementedError

    def error_detail(self, body: bytes) -> str:
        return json_errors(body, ("message",), ("error",))


class HttpRequest:
    """One POST: path under the base URL, body bytes, content type, extra headers."""

    __slots__ = ("body", "content_type", "headers", "path")

    def __init__(
        self, path: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.path = path
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}

    @classmethod
    def json(cls, path: str, payload: Any, headers: dict[str, str] | None = None) -> HttpRequest:
        return cls(path, json.dumps(payload).encode(), "application/json", headers)
