"""API token pages: create (the raw token shown once), list, revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from mailer.models import ApiToken
from mailer.selectors.tokens import token_get, token_list
from mailer.services.tokens import token_create, token_revoke

from .settings_forms import TokenForm

# The raw value of a token just created: kept in the session only until the next page shows it.
NEW_TOKEN_KEY = "new_api_token"  # noqa: S105 (a session key, not a secret)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        token, raw = token_create(account=request.user, name=form.cleaned_data["name"])
        request.session[NEW_TOKEN_KEY] = {"id": token.pk, "raw": raw}
        return redirect("token-created")
    return render(
        request, "tokens/list.html", {"form": form, "tokens": token_list(account=request.user)}
    )


@never_cache  # the page holds a secret: no browser or proxy may keep a copy
@login_required
@require_GET
def token_created(request: HttpRequest) -> HttpResponse:
    new = request.session.pop(NEW_TOKEN_KEY, None)
    token = None
    if new is not None:
        try:
            token = token_get(account=request.user, token_id=new["id"])
        except ApiToken.DoesNotExist:
            new = None
    return render(
        request, "tokens/created.html", {"token": token, "raw": new["raw"] if new else None}
    )


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
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
