"""Provider pages: the failover list, add/edit/delete per kind, reorder, enable, send a test."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms.utils import pretty_name
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from mailer.delivery.breaker import CircuitBreaker, breaker
from mailer.errors import AppError
from mailer.models import ProviderConfig
from mailer.providers import specs
from mailer.selectors.providers import (
    pacing_usage,
    provider_detail,
    provider_get,
    provider_list,
    provider_test_addresses,
)
from mailer.services.providers import (
    MOVES,
    provider_config_create,
    provider_config_delete,
    provider_config_update,
    provider_move,
    provider_test_send,
)

from .provider_forms import (
    ADD_CHOICES,
    PROVIDER_FORMS,
    ProviderForm,
    ProviderTestForm,
    preset_initial,
)

# The last test send's result, shown once on the list page beside its provider.
TEST_RESULT_KEY = "provider_test_result"


def _config(request: HttpRequest, provider_id: int) -> ProviderConfig:
    """The signed-in account's provider; any other id (another account's too) is a 404."""
    try:
        return provider_get(account=request.user, provider_id=provider_id)
    except ProviderConfig.DoesNotExist:
        raise Http404("No such provider.") from None


def _back_to(config: ProviderConfig) -> HttpResponse:
    # The fragment brings the moved or tested provider into view and starts keyboard focus there.
    return redirect(f"{reverse('providers')}#provider-{config.pk}")


def pacing_text(pacing: dict[str, Any]) -> str:
    """A provider's limits and its use of them, e.g. "3 / 5 a second · 120 / 200 a day
    (rolling 24 h) · counts recipients"; its use is left out while it is unknown."""
    usage = pacing["usage"]
    parts = []
    for limit, used, per in (("max_per_second", "last_second", "a second"),
                             ("max_per_day", "last_day", "a day (rolling 24 h)")):  # fmt: skip
        if pacing[limit]:
            parts.append(f"{f'{usage[used]} / ' if usage else ''}{pacing[limit]} {per}")
    if not parts:
        return "no limits"
    if pacing["counts"] == "recipients":
        parts.append("counts recipients")
    return " · ".join(parts)


def _row(
    config: ProviderConfig, circuit_breaker: CircuitBreaker, base_url: str, usage: dict
) -> dict[str, Any]:
    fields = PROVIDER_FORMS[config.kind].base_fields
    spec = specs()[config.kind]
    detail = provider_detail(config, breaker=circuit_breaker, base_url=base_url, usage=usage)
    detail["kind_label"] = spec.label
    detail["pacing_text"] = pacing_text(detail["pacing"])
    url = detail["webhook_url"]
    detail["webhook_steps"] = [step.format(url=url) for step in spec.webhook_steps] if url else []
    detail["setting_items"] = [
        (fields[k].label or pretty_name(k), v) for k, v in config.settings.items()
    ]
    detail["secret_items"] = [
        (fields[o.name].label, o.name in config.secret_names) for o in specs()[config.kind].secrets
    ]
    return detail


@login_required
def listing(request: HttpRequest) -> HttpResponse:
    circuit_breaker = breaker()
    base_url = request.build_absolute_uri("/")
    configs = list(provider_list(account=request.user))
    usage = pacing_usage(configs)  # one round trip for every provider's pacing counts
    rows = [_row(c, circuit_breaker, base_url, usage) for c in configs]
    default = next((r["id"] for r in rows if r["enabled"]), None)
    return render(
        request,
        "providers/list.html",
        {
            "providers": rows,
            "default_id": default,
            "test_result": request.session.pop(TEST_RESULT_KEY, None),
        },
    )


@login_required
@require_http_methods(["GET"])
def add_choice(request: HttpRequest) -> HttpResponse:
    return render(request, "providers/add_choice.html", {"choices": ADD_CHOICES})


def _save(form: ProviderForm, save) -> ProviderConfig | None:
    """Run a provider service with the form's data; when it refuses, put its errors on the
    form and return None."""
    if not form.is_valid():
        return None
    try:
        return save()
    except AppError as exc:
        form.add_app_error(exc)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def add(request: HttpRequest, kind: str) -> HttpResponse:
    form_class = PROVIDER_FORMS.get(kind)
    if form_class is None:
        raise Http404("No such provider kind.")
    initial: dict[str, Any] | None = {"enabled": True}
    if preset := request.GET.get("preset"):
        initial = preset_initial(preset, kind=kind)
        if initial is None:
            raise Http404("No such preset.")
    form = form_class(request.POST if request.method == "POST" else None, initial=initial)

    def save() -> ProviderConfig:
        return provider_config_create(
            account=request.user,
            kind=kind,
            name=form.cleaned_data["name"],
            enabled=form.cleaned_data["enabled"],
            settings=form.settings_data(),
            secrets=form.secrets_data(),
            **form.limits_data(),
        )

    if request.method == "POST" and (config := _save(form, save)) is not None:
        messages.success(request, f"Added the provider {config.name}.")
        return _back_to(config)
    spec = specs()[kind]
    label = next((p.label for p in spec.presets if p.name == preset), spec.label)
    return render(
        request,
        "providers/form.html",
        {"form": form, "title": f"Add a provider: {label}", "kind": kind, "preset": preset},
    )


@login_required
@require_http_methods(["GET", "POST"])
def edit(request: HttpRequest, provider_id: int) -> HttpResponse:
    config = _config(request, provider_id)
    data = request.POST if request.method == "POST" else None
    form = PROVIDER_FORMS[config.kind](data, config=config)

    def save() -> ProviderConfig:
        return provider_config_update(
            config=config,
            name=form.cleaned_data["name"],
            enabled=form.cleaned_data["enabled"],
            settings=form.settings_data(),
            secrets=form.secrets_data() or None,
            limits=form.limits_data(),
        )

    if request.method == "POST" and _save(form, save) is not None:
        messages.success(request, f"Saved the provider {config.name}.")
        return _back_to(config)
    title = f"Edit {config.name}"
    return render(
        request,
        "providers/form.html",
        {"form": form, "title": title, "kind": config.kind, "config": config},
    )


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, provider_id: int) -> HttpResponse:
    config = _config(request, provider_id)
    if request.method == "POST":
        provider_config_delete(config=config)
        messages.success(request, f"Deleted the provider {config.name}.")
        return redirect("providers")
    return render(request, "providers/delete.html", {"config": config})


@login_required
@require_POST
def move(request: HttpRequest, provider_id: int) -> HttpResponse:
    config = _config(request, provider_id)
    direction = request.POST.get("direction", "")
    if direction not in MOVES:
        messages.error(request, f"Can't move a provider {direction!r}: use up, down or first.")
        return _back_to(config)
    provider_move(config=config, direction=direction)
    done = "is now first" if direction == "first" else f"moved {direction}"
    messages.success(request, f"{config.name} {done}.")
    return _back_to(config)


@login_required
@require_POST
def enable(request: HttpRequest, provider_id: int) -> HttpResponse:
    config = _config(request, provider_id)
    enabled = request.POST.get("enabled") == "1"
    provider_config_update(config=config, enabled=enabled)
    messages.success(request, f"{config.name} is {'enabled' if enabled else 'disabled'}.")
    return _back_to(config)


@login_required
@require_http_methods(["GET", "POST"])
def test(request: HttpRequest, provider_id: int) -> HttpResponse:
    """GET: a form to choose the recipient. POST: send one test message through this provider
    only (to the account's address unless given) and show the result on the list page."""
    config = _config(request, provider_id)
    form = ProviderTestForm(
        request.POST if request.method == "POST" else None, initial={"to": request.user.email}
    )
    addresses = None
    if form.is_valid():  # a GET's form is not: it is shown
        try:
            addresses = provider_test_addresses(account=request.user, to=form.cleaned_data["to"])
        except AppError as exc:
            form.add_app_error(exc)
    if addresses is None:
        return render(request, "providers/test.html", {"form": form, "config": config})
    to, from_email = addresses
    attempt = provider_test_send(config=config, to=to, from_email=from_email)
    request.session[TEST_RESULT_KEY] = {
        "provider_id": config.pk,
        "to": to,
        "outcome": attempt.outcome,
        "error_code": attempt.code,
        "error_message": attempt.message,
        "duration_ms": round(attempt.duration * 1000),
    }
    return _back_to(config)
