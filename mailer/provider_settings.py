"""What each provider kind accepts as settings and secrets, and where its hosts may point."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings

from mailer.errors import InvalidInput, NameTaken
from mailer.providers import net

# Planned in DESIGN.md but without a provider module yet: named so the error can say "not yet".
PLANNED_KINDS = ("mailgun", "mandrill")
SMTP_SECURITY = ("starttls", "ssl", "none")
# Presets for pages: a kind and its settings; the user adds the secrets.
PRESETS: dict[str, dict[str, Any]] = {
    "gmail": {
        "kind": "smtp",
        "label": "Gmail (SMTP)",
        "settings": {"host": "smtp.gmail.com", "port": 587, "security": "starttls"},
    },
}
# The whole budget for resolving one host name while validating a config.
RESOLVE_TIMEOUT = 2.0
MAX_SECRET_LENGTH = 4096

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")


class ProviderSettingsError(InvalidInput):
    """A config can't be saved. `errors` maps each field ("settings.host") to its messages."""


class ProviderNameTaken(NameTaken):
    """The only problem: another provider of the account already has this name."""


# Field cleaners: return the clean value or raise ValueError with a message for people -------


def _text(value: Any, *, max_length: int = 255) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain line breaks or control characters.")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters.")
    return value


def _secret(value: Any) -> str:
    # Never echo the value: error messages are returned to the caller and logged.
    return _text(value, max_length=MAX_SECRET_LENGTH)


def _host(value: Any) -> str:
    """A host name or an IP address (IPv6 with or without brackets), no scheme or port."""
    host = _text(value).strip()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    name = bare.rstrip(".").lower()
    if not _HOSTNAME.match(name) or name.rsplit(".", 1)[-1].isdigit():
        raise ValueError(
            f"{host!r} is not a host name or IP address (give only the host, like "
            "'smtp.example.com', without scheme or port)."
        )
    return name


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be a whole number from 1 to 65535.")
    return value


def _security(value: Any) -> str:
    if value not in SMTP_SECURITY:
        raise ValueError(f"must be one of {', '.join(SMTP_SECURITY)}.")
    return value


def _region(value: Any) -> str:
    region = _text(value, max_length=50).strip()
    if not _REGION.match(region):
        raise ValueError(f"{region!r} is not an AWS region like 'eu-west-1'.")
    return region


def _url(value: Any) -> str:
    """An http(s) base URL. No user:password@: settings are returned by the API, secrets not."""
    url = _text(value, max_length=2048).strip()
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL like 'https://api.example.com'.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; put them in secrets.")
    if parts.fragment or parts.query:
        raise ValueError("must not contain a query or fragment.")
    _host(parts.hostname)
    return url.rstrip("/")


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


@dataclass(frozen=True)
class Option:
    """One setting or secret. `default` may be a function of the other clean settings;
    `host` extracts the host the provider will connect to, for the private-address rule."""

    name: str
    clean: Callable[[Any], Any]
    required: bool = False
    default: Any = None
    requires: tuple[str, ...] = ()
    host: Callable[[str], str] | None = None
    help: str = ""


@dataclass(frozen=True)
class KindSpec:
    kind: str
    label: str
    settings: tuple[Option, ...]
    secrets: tuple[Option, ...]


KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            "smtp",
            "SMTP",
            settings=(
                Option("host", _host, required=True, host=str, help="e.g. smtp.gmail.com"),
                # The port the chosen security implies unless given: 465 is SMTPS.
                Option("port", _port, default=lambda s: 465 if s.get("security") == "ssl" else 587),
                Option("security", _security, default="starttls"),
            ),
            secrets=(
                Option("username", _secret, requires=("password",)),
                Option("password", _secret),
            ),
        ),
        KindSpec(
            "ses",
            "Amazon SES",
            settings=(
                Option("region", _region, required=True, help="e.g. eu-west-1"),
                Option("endpoint_url", _url, host=url_host, help="only for SES-compatible APIs"),
            ),
            secrets=(
                Option("access_key_id", _secret, required=True),
                Option("secret_access_key", _secret, required=True),
            ),
        ),
        KindSpec(
            "sendgrid",
            "SendGrid",
            settings=(
                Option("host", _url, host=url_host, help="e.g. https://api.eu.sendgrid.com"),
            ),
            secrets=(Option("api_key", _secret, required=True),),
        ),
    )
}


def kind_spec(kind: Any) -> KindSpec:
    """The spec of an available kind, or ProviderSettingsError naming the ones that exist."""
    available = ", ".join(KINDS)
    if isinstance(kind, str) and kind in KINDS:
        return KINDS[kind]
    if kind in PLANNED_KINDS:
        message = f"{kind!r} is not available yet; available kinds: {available}."
    else:
        message = f"unknown provider kind {kind!r}; available kinds: {available}."
    raise ProviderSettingsError({"kind": [message]})


def clean_name(value: Any) -> str:
    name = _text(value, max_length=100).strip()
    if not name:
        raise ValueError("must not be empty.")
    if name.isdigit():
        # A send request names its provider by id or name: "7" must mean one thing.
        raise ValueError("must not be only digits (ids are numbers).")
    return name


def clean_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2_147_483_647:
        raise ValueError("must be a whole number from 0 to 2147483647.")
    return value


def clean_provider(
    kind: str,
    settings: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
    *,
    partial: bool = False,
    existing_secret_names: Iterable[str] = (),
    trusted: bool = False,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Validate a kind's settings and secrets; return (settings, secrets) to store.

    Settings are always complete: they replace the stored ones (defaults filled in). With
    `partial` (an update), settings None means "unchanged" (returned as None), and secrets are
    changes merged into `existing_secret_names`: a value of "" or None removes that secret and
    comes back as None. `trusted` (an operator seeding loopback providers) skips the
    private-address rule for hosts, and nothing else. Raises ProviderSettingsError naming every
    bad field.
    """
    spec = kind_spec(kind)
    errors: dict[str, list[str]] = {}
    clean_settings = None
    if settings is not None or not partial:
        clean_settings = _clean_settings(spec, settings or {}, errors)
    clean_secrets = _clean_secrets(spec, secrets or {}, errors)
    names = set(existing_secret_names) if partial else set()
    names |= {k for k, v in clean_secrets.items() if v is not None}
    names -= {k for k, v in clean_secrets.items() if v is None}
    _check_required_secrets(spec, names, clean_secrets, errors)
    if clean_settings is not None and not trusted:
        _check_hosts(spec, clean_settings, errors)
    if errors:
        raise ProviderSettingsError(errors)
    if not partial:
        clean_secrets = {k: v for k, v in clean_secrets.items() if v is not None}
    return clean_settings, clean_secrets


def _clean_settings(
    spec: KindSpec, given: Mapping[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        errors["settings"] = ["must be an object."]
        return {}
    _unknown("settings", given, spec.settings, errors)
    clean: dict[str, Any] = {}
    for option in spec.settings:
        value = given.get(option.name)
        if value is None or value == "":
            if option.required:
                errors[f"settings.{option.name}"] = [f"is required for {spec.kind}."]
            continue
        try:
            clean[option.name] = option.clean(value)
        except ValueError as exc:
            errors[f"settings.{option.name}"] = [str(exc)]
    # Defaults last: one may depend on another setting (the SMTP port on its security).
    for option in spec.settings:
        if option.name not in clean and option.default is not None and not option.required:
            default = option.default
            clean[option.name] = default(clean) if callable(default) else default
    return {o.name: clean[o.name] for o in spec.settings if o.name in clean}


def _clean_secrets(
    spec: KindSpec, given: Mapping[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        errors["secrets"] = ["must be an object."]
        return {}
    _unknown("secrets", given, spec.secrets, errors)
    clean: dict[str, Any] = {}
    for option in spec.secrets:
        if option.name not in given:
            continue
        value = given[option.name]
        if value is None or value == "":
            clean[option.name] = None  # removal in an update; absent on create
            continue
        try:
            clean[option.name] = option.clean(value)
        except ValueError as exc:
            errors[f"secrets.{option.name}"] = [str(exc)]
    return clean


def _unknown(
    section: str, given: Mapping[str, Any], options: tuple[Option, ...], errors: dict
) -> None:
    known = [o.name for o in options]
    for key in given:
        if key not in known:
            errors[f"{section}.{key}"] = [
                f"is not a {section[:-1]} of this kind; known: {', '.join(known)}."
            ]


def _check_required_secrets(
    spec: KindSpec, names: set[str], changes: Mapping[str, Any], errors: dict[str, list[str]]
) -> None:
    for option in spec.secrets:
        field = f"secrets.{option.name}"
        if field in errors:
            continue
        if option.required and option.name not in names:
            removed = option.name in changes
            errors[field] = [
                f"is required for {spec.kind}" + (" and can't be removed." if removed else ".")
            ]
        if option.name in names:
            for needed in option.requires:
                if needed not in names:
                    errors.setdefault(f"secrets.{needed}", []).append(
                        f"is required when secrets.{option.name} is set."
                    )


def _check_hosts(spec: KindSpec, settings: Mapping[str, Any], errors: dict) -> None:
    for option in spec.settings:
        field = f"settings.{option.name}"
        if option.host is None or option.name not in settings or field in errors:
            continue
        if problem := host_problem(option.host(settings[option.name])):
            errors[field] = [problem]


# Where a provider may connect -----------------------------------------------------------------


def host_problem(host: str) -> str | None:
    """Why a provider config may not point at host, or None.

    Loopback, private, link-local, multicast, reserved and unspecified addresses are refused,
    also behind a name (every address it resolves to must be public), unless
    ALLOW_PRIVATE_PROVIDER_HOSTS is set. A name that does not resolve is refused too. The same
    rule is checked again at every connect (mailer.providers.net), so a name that changes its
    answer after it was saved gains nothing.
    """
    if django_settings.ALLOW_PRIVATE_PROVIDER_HOSTS:
        return None
    try:
        net.checked_addresses(host, allow_private=False, timeout=RESOLVE_TIMEOUT)
    except net.BlockedHost as exc:
        return str(exc)
    except TimeoutError:
        return f"{host} did not resolve within {RESOLVE_TIMEOUT:g} s; check the name."
    except (OSError, UnicodeError, ValueError) as exc:
        return f"{host} does not resolve ({exc}); check the name."
    return None
