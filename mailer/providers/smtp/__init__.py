"""SMTP: any server (Gmail is a preset). The transport is in transport.py."""

from __future__ import annotations

from typing import Any

from .. import spec as s

SECURITY = (
    ("starttls", "STARTTLS (usually port 587)"),
    ("ssl", "SSL/TLS from the start (usually port 465)"),
    ("none", "None: plain text (only on a trusted network)"),
)


def _security_default(settings: dict[str, Any]) -> str:
    return "ssl" if settings.get("port") == 465 else "starttls"


def _port_default(settings: dict[str, Any]) -> int:
    return 465 if settings.get("security") == "ssl" else 587


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """smtp://user:password@host:port?security=..., smtps://host (security ssl)."""
    settings: dict[str, Any] = {"host": url.hostname or ""}
    settings.update(url.params("security"))
    if url.port:
        settings["port"] = url.port
    if url.scheme.lower() == "smtps":
        settings["security"] = "ssl"
    secrets = {}
    if url.username:
        secrets = {"username": url.username, "password": url.password or ""}
    return settings, secrets


SPEC = s.KindSpec(
    kind="smtp",
    label="SMTP",
    note="Any SMTP server: host, port, security, and a username and password if it wants them.",
    transport="mailer.providers.smtp.transport:SmtpProvider",
    sent_via=2,
    legacy_name="google_SMTP",
    settings=(
        s.Option(
            "host",
            s.host,
            required=True,
            host=str,
            help="The server's name, like smtp.example.com.",
        ),
        # Each default follows the other when given: port 465 means SSL/TLS, SSL/TLS port 465.
        s.Option(
            "security",
            s.one_of(*(v for v, _ in SECURITY)),
            default=_security_default,
            choices=SECURITY,
            field="choice",
            help="STARTTLS unless the port is 465.",
        ),
        s.Option(
            "port",
            s.port,
            default=_port_default,
            field="number",
            help="Leave blank for 587 (465 with SSL/TLS).",
        ),
    ),
    secrets=(
        s.Option("username", s.secret, requires=("password",)),
        s.Option("password", s.secret),
    ),
    url_schemes=("smtp", "smtps"),
    from_url=from_url,
    url_example="smtp://user:password@smtp.example.com:587",
    presets=(
        s.Preset(
            "gmail",
            "Gmail (SMTP)",
            "SMTP with Gmail's server filled in: your address and an app password.",
            {"host": "smtp.gmail.com", "port": 587, "security": "starttls"},
        ),
    ),
)
