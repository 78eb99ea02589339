"""API token pages: create (the raw token shown once), list, revoke."""

from __future__ import annotations

import secrets

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from mailer.models import ApiToken
from mailer.selectors.tokens import token_active_count, token_get, token_list
from mailer.services.tokens import (
    MAX_API_TOKENS_PER_ACCOUNT,
    TokenLimitReached,
    token_create,
    token_revoke,
)

from .forms import PageForm

# The create form carries a one-time value; the session remembers the last few used, so posting
# the same form again (a reload of the page showing a new token) creates no second token. It is
# not a secret: the raw token itself is never stored, in the session or anywhere else.
USED_FORMS_KEY = "token_forms_used"
_USED_FORMS_KEPT = 20


class TokenForm(PageForm, forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        help_text="What the token is for, like 'billing app'.",
    )


def _list(request: HttpRequest, form: TokenForm) -> HttpResponse:
    return render(
        request,
        "tokens/list.html",
        {
            "form": form,
            "form_id": secrets.token_urlsafe(16),
            "tokens": token_list(account=request.user),
            "active": token_active_count(account=request.user),
            "limit": getattr(settings, "MAX_API_TOKENS_PER_ACCOUNT", MAX_API_TOKENS_PER_ACCOUNT),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def listing(request: HttpRequest) -> HttpResponse:
    """The list and the create form. A created token is shown in the answer to the POST that
    created it, which no cache may keep; it is never stored to be shown later."""
    form = TokenForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        form_id = request.POST.get("form_id", "")[:64]
        used = list(request.session.get(USED_FORMS_KEY, []))
        if form_id and form_id in used:
            response = render(request, "tokens/created.html", {"token": None, "raw": None})
            add_never_cache_headers(response)
            return response
        try:
            token, raw = token_create(account=request.user, name=form.cleaned_data["name"])
        except TokenLimitReached as exc:
            form.add_app_error(exc)
            return _list(request, form)
        if form_id:
            request.session[USED_FORMS_KEY] = [*used, form_id][-_USED_FORMS_KEPT:]
        response = render(request, "tokens/created.html", {"token": token, "raw": raw})
        add_never_cache_headers(response)  # no-store: no browser or proxy may keep a copy
        return response
    return _list(request, form)


@never_cache
@login_required
@require_GET
def created(request: HttpRequest) -> HttpResponse:
    """Where the raw token used to wait in the session: now only says it is shown once."""
    return render(request, "tokens/created.html", {"token": None, "raw": None})


@login_required
@require_http_methods(["GET", "POST"])
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = token_get(account=request.user, token_id=token_id)
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
    if request.method == "POST":
        token_revoke(token=token)
        messages.success(
            request, f"Revoked the token {token.name}: the API refuses it from now on."
        )
        return redirect("tokens")
    return render(request, "tokens/revoke.html", {"token": token})
