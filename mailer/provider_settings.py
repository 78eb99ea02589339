"""Clean a provider config against its kind's spec (mailer.providers.<kind>), and check where
its hosts may point."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings as django_settings

from mailer.errors import InvalidInput, NameTaken
from mailer.providers import net, specs
from mailer.providers.spec import KindSpec, Option, text
from mailer.providers.urls import parse_provider_url, redact

# The whole budget for resolving one host name while validating a config.
RESOLVE_TIMEOUT = 2.0


class ProviderSettingsError(InvalidInput):
    """A config can't be saved. `errors` maps each field ("settings.host") to its messages."""


class ProviderNameTaken(NameTaken):
    """The only problem: another provider of the account already has this name."""


def kind_spec(kind: Any) -> KindSpec:
    """The spec of an available kind, or ProviderSettingsError naming the ones that exist."""
    kinds = specs()
    if isinstance(kind, str) and kind in kinds:
        return kinds[kind]
    message = f"unknown provider kind {kind!r}; available kinds: {', '.join(kinds)}."
    raise ProviderSettingsError({"kind": [message]})


def provider_urls(
    urls: Iterable[str], *, source: str
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each URL's (kind, settings, secrets), cleaned as a config saved through the API is (the
    same defaults), but trusted: the operator's own hosts may be private. Raises ValueError
    naming every URL that can't be used, as `source[index]` with the URL without its
    credentials, and why."""
    parsed, problems = [], []
    for index, url in enumerate(urls):
        try:
            kind, settings, secrets = parse_provider_url(url)
            settings, secrets = clean_provider(kind, settings, secrets, trusted=True)
            parsed.append((kind, settings, secrets))
        except (ValueError, ProviderSettingsError) as exc:
            problems.append(f"{source}[{index}] ({redact(url)!r}): {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return parsed


def clean_name(value: Any) -> str:
    name = text(value, max_length=100).strip()
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


# The largest pacing limits taken: far above any provider's, small enough for any counter.
LIMIT_MOST = {"max_per_second": 100_000, "max_per_day": 1_000_000_000}


def clean_limit(name: str, value: Any) -> int | None:
    """A pacing limit (max_per_second, max_per_day): a whole number from 1, or None for none."""
    if value is None:
        return None
    most = LIMIT_MOST[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValueError(f"must be a whole number from 1 to {most}, or null for no limit.")
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
