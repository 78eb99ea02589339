"""Webhook pages: the account's endpoints with add (the signing secret shown once), enable and
disable, rotate the secret, delete; each endpoint's recent deliveries, and "Send again"."""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from mailer.errors import AppError
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.selectors.webhooks import (
    webhook_endpoint_get,
    webhook_endpoint_list,
    webhook_message_get,
    webhook_message_page,
)
from mailer.services.webhooks_out import (
    MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate,
    webhook_endpoint_update,
    webhook_message_retry,
)
from mailer.vocabulary import WebhookEventType

from .forms import PageForm

# As on the tokens page: the add form carries a one-time value, so posting it again (a reload
# of the page showing the new secret) adds no second endpoint.
USED_FORMS_KEY = "webhook_forms_used"
_USED_FORMS_KEPT = 20
PAGE_SIZE = 25


class WebhookForm(PageForm, forms.Form):
    url = forms.CharField(
        label="Endpoint URL",
        max_length=2000,
        help_text="Where to POST events: an https URL on a public host, like "
        "https://example.com/webhooks/email.",
    )
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=WebhookEventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: every event.",
    )


def _endpoint(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    """The signed-in account's endpoint; any other id (another account's too) is a 404."""
    try:
        return webhook_endpoint_get(account=request.user, endpoint_id=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such webhook endpoint.") from None


def _secret_shown(request: HttpRequest, endpoint, secret, *, rotated: bool) -> HttpResponse:
    context = {"endpoint": endpoint, "secret": secret, "rotated": rotated}
    response = render(request, "webhooks/created.html", context)
    add_never_cache_headers(response)  # no-store: no browser or proxy may keep a copy
    return response


def _list(request: HttpRequest, form: WebhookForm) -> HttpResponse:
    labels = dict(WebhookEventType.choices)
    endpoints = webhook_endpoint_list(account=request.user)
    for endpoint in endpoints:
        endpoint.event_labels = [labels.get(t, t) for t in endpoint.event_types]
    context = {"form": form, "form_id": secrets.token_urlsafe(16), "endpoints": endpoints}
    context["limit"] = MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT
    return render(request, "webhooks/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def listing(request: HttpRequest) -> HttpResponse:
    """The endpoints and the add form. A new endpoint's secret is shown in the answer to the
    POST that added it, which no cache may keep; it is never shown again."""
    form = WebhookForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        return _list(request, form)
    form_id = request.POST.get("form_id", "")[:64]
    used = list(request.session.get(USED_FORMS_KEY, []))
    if form_id and form_id in used:
        return _secret_shown(request, None, None, rotated=False)
    try:
        endpoint, secret = webhook_endpoint_create(
            account=request.user,
            url=form.cleaned_data["url"],
            event_types=form.cleaned_data["event_types"],
        )
    except AppError as exc:
        form.add_app_error(exc)
        return _list(request, form)
    if form_id:
        request.session[USED_FORMS_KEY] = [*used, form_id][-_USED_FORMS_KEPT:]
    return _secret_shown(request, endpoint, secret, rotated=False)


@login_required
@require_POST
def enable(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    enabled = request.POST.get("enabled") == "1"
    webhook_endpoint_update(endpoint=endpoint, enabled=enabled)
    messages.success(request, f"{endpoint.url} is {'enabled' if enabled else 'disabled'}.")
    return redirect(f"{reverse('webhooks')}#webhook-{endpoint.pk}")


@login_required
@require_http_methods(["GET", "POST"])
def rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "POST":
        secret = webhook_endpoint_rotate(endpoint=endpoint)
        return _secret_shown(request, endpoint, secret, rotated=True)
    return render(request, "webhooks/rotate.html", {"endpoint": endpoint})


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "POST":
        webhook_endpoint_delete(endpoint=endpoint)
        messages.success(request, f"Deleted the webhook endpoint {endpoint.url}.")
        return redirect("webhooks")
    return render(request, "webhooks/delete.html", {"endpoint": endpoint})


@login_required
@require_http_methods(["GET"])
def deliveries(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    page = webhook_message_page(endpoint=endpoint, page=number, page_size=PAGE_SIZE)
    if page.number > page.last:  # past the end (a hand-made URL): the last page
        page = webhook_message_page(endpoint=endpoint, page=page.last, page_size=PAGE_SIZE)
    labels = dict(WebhookEventType.choices)
    for row in page.results:
        row["event_label"] = labels.get(row["event_type"], row["event_type"])
    context = {"endpoint": endpoint, "page": page}
    return render(request, "webhooks/deliveries.html", context)


@login_required
@require_POST
def retry(request: HttpRequest, endpoint_id: int, message_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    try:
        message = webhook_message_get(endpoint=endpoint, ref=message_id)
        webhook_message_retry(message=message)
    except WebhookMessage.DoesNotExist:
        raise Http404("No such delivery.") from None
    except AppError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{message.msg_id} is due again: it goes out with the next sweep."
        )
    return redirect(f"{reverse('webhook-deliveries', args=[endpoint.pk])}#delivery-{message_id}")
