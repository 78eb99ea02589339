"""Mailgun over mailer.providers.net's HTTP client: the message as MIME (POST messages.mime),
the envelope recipients beside it, typed errors, no redirects.

Not through an SDK's client: they send with requests or urllib, which follow a redirect from the
provider host with the Authorization header on and can't connect to an address checked
beforehand. Raw MIME rather than Mailgun's field API (POST messages) keeps everything Django puts
in a message (inline parts with their Content-ID, MIME parts, every header, the Message-ID) as
Django built it, as the SMTP and SES transports send it."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import quote

from django.core.mail import EmailMessage

from .. import spec
from ..base import ConfigurationError, ProviderError
from ..http import HttpProvider, HttpRequest, clean_key, json_errors
from ..httpclient import HttpAnswer
from ..message_parts import envelope, metadata, mime_message
from . import DEFAULT_API_URL

# Mailgun's Basic-auth user name is always this; the API key is the password.
AUTH_USER = "api"


def variables(message: EmailMessage) -> list[tuple[str, str]]:
    """Our metadata as Mailgun `v:` variables: they come back in every event of the message,
    which is how its webhooks find the exact email (DESIGN.md)."""
    return [
        (f"v:{name}", value if isinstance(value, str) else json.dumps(value))
        for name, value in metadata(message).items()
    ]


def form_data(
    fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its content type: text fields, then
    (name, filename, bytes) files. The names are ours, never a caller's."""
    content = b"".join(data for _, _, data in files)
    boundary = secrets.token_hex(16)
    while boundary.encode() in content:  # a random 128-bit boundary: all but never taken
        boundary = secrets.token_hex(16)
    parts = [
        (f'Content-Disposition: form-data; name="{name}"', value.encode("utf-8"))
        for name, value in fields
    ]
    parts += [
        (
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: message/rfc822",
            data,
        )
        for name, filename, data in files
    ]
    body = b"".join(
        f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n" for headers, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class MailgunProvider(HttpProvider):
    kind = "mailgun"
    default_base_url = DEFAULT_API_URL
    base_url_setting = "api_url"

    def __init__(
        self,
        *,
        domain: str | None = None,
        api_key: str | None = None,
        api_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Accept "https://api.mailgun.net/", ".../v3" or ".../v3/": the path is ours.
        base = (api_url or DEFAULT_API_URL).strip().rstrip("/").removesuffix("/v3")
        super().__init__(base_url=base, **kwargs)
        self.domain = domain
        self.api_key = api_key

    def describe(self) -> str:
        return f"{super().describe()} ({self.domain or 'no domain'})"

    def auth_headers(self) -> dict[str, str]:
        key = clean_key(self.kind, "api_key", self.api_key)
        token = base64.b64encode(f"{AUTH_USER}:{key}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def sending_domain(self) -> str:
        self.require("domain", self.domain)
        try:
            return spec.domain(self.domain)
        except ValueError as exc:
            raise ConfigurationError(
                f"{self.kind} setting 'domain' is not valid: {exc}", setting="domain"
            ) from None

    def prepare(self, message: EmailMessage) -> HttpRequest:
        path = f"/v3/{quote(self.sending_domain(), safe='')}/messages.mime"
        # Django leaves Bcc out of the headers (and refuses a Bcc header): only `to` has them.
        mime = mime_message(message).as_bytes()
        fields = [("to", address) for address in envelope(message)] + variables(message)
        body, content_type = form_data(fields, [("message", "message.mime", mime)])
        return HttpRequest(path, body, content_type)

    def message_id(self, answer: HttpAnswer) -> str:
        """The "id" of {"id": "<...@domain>", "message": "Queued. Thank you."}."""
        return json_errors(answer.body, ("id",))

    def refusal(self, answer: HttpAnswer) -> ProviderError:
        """Mailgun's 404 with a JSON message names a domain it doesn't know (on this API host:
        a domain lives in one region); one without is a path that doesn't exist. Its 401 says
        only "Forbidden", as text, not JSON."""
        status, detail = answer.status, self.error_detail(answer.body)
        if status == 404:
            setting = "domain" if detail else self.base_url_setting
            return ConfigurationError(
                f"{self.describe()} answered HTTP 404: {detail or 'no such API endpoint'}; "
                f"check the {setting} setting",
                setting=setting,
            )
        error = super().refusal(answer)
        if status == 401 and not detail:
            error.message = f"{error.message}: the API key was refused; check api_key"
            error.args = (error.message,)
        return error

    def error_detail(self, body: bytes) -> str:
        """The "message" of Mailgun's {"message": "..."} errors (sanitized by json_errors)."""
        return json_errors(body, ("message",))
