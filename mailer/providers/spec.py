"""What a provider kind is, as data: its settings and secrets (each with its only default and
allowed values), label, presets, legacy number and URL scheme. Each kind's package declares one
KindSpec; the registry (mailer.providers) collects them and everything else derives from it:
model choices, API help, page forms, the original contract's maps, MAIL_PROVIDER_URLS.

Importing a spec imports no SDK: the transport is named by path and loaded on first use."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_SECRET_LENGTH = 4096

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")


# Cleaners: return the clean value or raise ValueError with a message for people -------------


def text(value: Any, *, max_length: int = 255) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain line breaks or control characters.")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters.")
    return value


def secret(value: Any) -> str:
    # Never echo the value: error messages are returned to the caller and logged.
    return text(value, max_length=MAX_SECRET_LENGTH)


def host(value: Any) -> str:
    """A host name or an IP address (IPv6 with or without brackets), no scheme or port."""
    given = text(value).strip()
    bare = given[1:-1] if given.startswith("[") and given.endswith("]") else given
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    name = bare.rstrip(".").lower()
    if not _HOSTNAME.match(name) or name.rsplit(".", 1)[-1].isdigit():
        raise ValueError(
            f"{given!r} is not a host name or IP address (give only the host, like "
            "'smtp.example.com', without scheme or port)."
        )
    return name


def port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be a whole number from 1 to 65535.")
    return value


def region(value: Any) -> str:
    given = text(value, max_length=50).strip()
    if not _REGION.match(given):
        raise ValueError(f"{given!r} is not an AWS region like 'eu-west-1'.")
    return given


def domain(value: Any) -> str:
    """A mail domain (a host name, not an address)."""
    name = host(value)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise ValueError(f"{name!r} is an IP address; give the sending domain, like 'mg.example.com'.")


def url(value: Any) -> str:
    """An http(s) base URL. No user:password@: settings are returned by the API, secrets not."""
    given = text(value, max_length=2048).strip()
    parts = urlsplit(given)
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError(f"{given!r} has an invalid port.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{given!r} is not an http(s) URL like 'https://api.example.com'.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; put them in secrets.")
    if parts.fragment or parts.query:
        raise ValueError("must not contain a query or fragment.")
    host(parts.hostname)
    return given.rstrip("/")


def url_host(value: str) -> str:
    return urlsplit(value).hostname or ""


def one_of(*values: str) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(values)}.")
        return value

    return clean


def token_text(value: Any) -> str:
    """A short identifier (a message stream, a configuration set): letters, digits, - _ ."""
    given = text(value, max_length=100).strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]+", given):
        raise ValueError("may hold only letters, digits, '.', '_' and '-'.")
    return given


def base_url_option(default: str | None, help: str, *, name: str = "api_url",
                    label: str = "API URL") -> Option:  # fmt: skip
    """The optional base-URL setting every HTTP kind has (a region's host, a proxy, a stand-in):
    an http(s) URL whose host is checked against the private-address rule."""
    return Option(name, url, label=label, default=default, host=url_host, max_length=2048,
                  help=help)  # fmt: skip


# The spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting or secret.

    `default` may be a function of the other clean settings; `host` extracts the host the
    provider will connect to, for the private-address rule; `label`, `help` and `choices`
    (value, label) are what pages and the API show; `field` says how a page asks for it
    ("text", "number", "choice"; secrets are always write-only)."""

    name: str
    clean: Callable[[Any], Any]
    label: str = ""
    help: str = ""
    required: bool = False
    default: Any = None
    requires: tuple[str, ...] = ()
    host: Callable[[str], str] | None = None
    choices: tuple[tuple[str, str], ...] = ()
    field: str = "text"
    max_length: int = 255
    transport: bool = True  # passed to the transport (False: e.g. a webhook signing key)

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def summary(self) -> str:
        """One line for API help: name, optional mark, its values or default."""
        mark = "" if self.required else "?"
        if self.choices:
            return f"{self.name}{mark} ({'|'.join(v for v, _ in self.choices)})"
        if self.default is not None and not callable(self.default):
            return f"{self.name}{mark} ({self.default})"
        return f"{self.name}{mark}"


@dataclass(frozen=True)
class Preset:
    """A kind with some settings filled in (Gmail is SMTP with its server): pages offer it."""

    name: str
    label: str
    note: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class KindSpec:
    """Everything the service knows about one provider kind, but how it talks to it.

    `transport` is "module:Class" of its Provider, loaded on first use. `sent_via` is its
    number in the original contract and `legacy_name` what that contract calls it in answers.
    `url_schemes` are the MAIL_PROVIDER_URLS schemes it reads, `from_url` turns one parsed URL
    into (settings, secrets) before the spec's own cleaning fills the defaults in."""

    kind: str
    label: str
    note: str
    transport: str
    sent_via: int
    legacy_name: str
    settings: tuple[Option, ...]
    secrets: tuple[Option, ...]
    url_schemes: tuple[str, ...]
    from_url: Callable[[ProviderUrl], tuple[dict, dict]]
    url_example: str
    presets: tuple[Preset, ...] = ()
    events: str = ""  # "module:Class" of its webhook events, where the kind has them
    # How to point the provider's webhook at us, step by step, for the provider page ("{url}" is
    # the config's webhook URL).
    webhook_steps: tuple[str, ...] = ()
    # Its sending rate and quota count recipients, not messages (SES: a message to 3 addresses
    # counts 3); pacing (mailer.delivery.pacing) counts the same way.
    counts_recipients: bool = False

    def option(self, name: str) -> Option | None:
        return next((o for o in (*self.settings, *self.secrets) if o.name == name), None)


@dataclass(frozen=True)
class ProviderUrl:
    """One MAIL_PROVIDER_URLS entry, read: user and password percent-decoded."""

    scheme: str
    hostname: str
    port: int | None
    username: str
    password: str
    query: Mapping[str, str]

    @property
    def https_origin(self) -> str:
        """https://host[:port] of the URL's host ("" without one): the API host, for the HTTP
        kinds whose URL may name one (an IPv6 address in brackets)."""
        if not self.hostname:
            return ""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"https://{host}" + (f":{self.port}" if self.port else "")

    @property
    def key(self) -> str:
        """The API key or token of an HTTP kind's URL: its password, or its user when alone."""
        return self.password or self.username or ""

    def params(self, *names: str) -> dict[str, str]:
        """The query parameters, each among `names` (settings the URL may carry)."""
        unknown = sorted(key for key in self.query if key not in names)
        if unknown:
            raise ValueError(
                f"unknown URL parameter {', '.join(unknown)}; known: {', '.join(names) or 'none'}"
            )
        return dict(self.query)
