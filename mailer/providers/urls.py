"""Parse provider URLs (`smtp://user:pass@host:587`, `ses://KEY:SECRET@eu-west-1`, ...: each
kind's spec names its schemes and reads its URL) into a kind, settings and secrets, for the
site's own mail (MAIL_PROVIDER_URLS). Error messages never quote a URL: it carries
credentials; see redact()."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import specs
from .spec import ProviderUrl


def parse_provider_url(url: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(kind, settings, secrets) as the URL gives them; the kind's spec fills in its defaults
    when they are cleaned (mailer.provider_settings.clean_provider), as for any other config."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    spec = next((s for s in specs().values() if scheme in s.url_schemes), None)
    if spec is None:
        known = ", ".join(scheme for s in specs().values() for scheme in s.url_schemes)
        raise ValueError(f"unknown provider URL scheme {scheme!r}: use {known}")
    settings, secrets = spec.from_url(
        ProviderUrl(
            scheme=scheme,
            hostname=parts.hostname or "",
            port=parts.port,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            query=dict(parse_qsl(parts.query)),
        )
    )
    return spec.kind, settings, secrets


def redact(url: str) -> str:
    """The URL with its user and password hidden, to name it in messages and logs."""
    parts = urlsplit(url.strip())
    if "@" not in parts.netloc:
        return url.strip()
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
