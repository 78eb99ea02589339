"""Parse provider URLs (`smtp://user:pass@host:587`, `ses://KEY:SECRET@eu-west-1`,
`sendgrid://:APIKEY@`) into a provider kind and its options, for the site's own mail
(MAIL_PROVIDER_URLS). Error messages never quote a URL: it carries credentials; see redact()."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SMTP_SECURITY = ("starttls", "ssl", "none")


def parse_provider_url(url: str) -> tuple[str, dict[str, Any]]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if scheme in ("smtp", "smtps"):
        port = parts.port or (465 if scheme == "smtps" else 25)
        default_security = {465: "ssl", 587: "starttls"}.get(port, "none")
        security = "ssl" if scheme == "smtps" else query.get("security", default_security)
        if security not in SMTP_SECURITY:
            raise ValueError(f"security must be one of {', '.join(SMTP_SECURITY)}")
        options: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": port,
            "security": security,
        }
        if user:
            options.update(username=user, password=password)
        return "smtp", options
    if scheme == "ses":
        options = {
            "region": parts.hostname or query.get("region", "us-east-1"),
            "access_key_id": user,
            "secret_access_key": password,
        }
        if "endpoint_url" in query:
            options["endpoint_url"] = query["endpoint_url"]
        return "ses", options
    if scheme == "sendgrid":
        options = {"api_key": password or user}
        if parts.hostname:
            options["host"] = f"https://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        if "host" in query:
            options["host"] = query["host"]
        return "sendgrid", options
    raise ValueError(f"unknown provider URL scheme {scheme!r}: use smtp, smtps, ses or sendgrid")


def redact(url: str) -> str:
    """The URL with its user and password hidden, to name it in messages and logs."""
    parts = urlsplit(url.strip())
    if "@" not in parts.netloc:
        return url.strip()
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def parse_provider_urls(urls: Sequence[str], *, source: str) -> list[tuple[str, dict[str, Any]]]:
    """Each URL's (kind, options), in order. Raises ValueError naming every URL that can't be
    read, as `source[index]` with the URL without its credentials, and why."""
    parsed, problems = [], []
    for index, url in enumerate(urls):
        try:
            parsed.append(parse_provider_url(url))
        except ValueError as exc:
            problems.append(f"{source}[{index}] ({redact(url)!r}): {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return parsed
