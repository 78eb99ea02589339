"""Webhooks in: POST /webhooks/in/<token>/, one URL per provider config (shown with the provider).
Thin: read the request within its size limit, hand it to mailer.services.events, answer."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from mailer.errors import AppError, InvalidInput, nearest
from mailer.providers.events import WebhookRequest
from mailer.selectors.providers import webhook_url
from mailer.services.events import (
    UnknownWebhook,
    VerificationUnavailable,
    WebhookUnauthenticated,
    events_ingest,
)

logger = logging.getLogger("mailer.events")

# The one map from application errors to this edge's answers.
STATUSES: dict[type[AppError], int] = {
    AppError: 400,
    InvalidInput: 400,
    UnknownWebhook: 404,
    WebhookUnauthenticated: 401,
    VerificationUnavailable: 503,  # the provider retries later
}


def _query(request: HttpRequest) -> str:
    """The query string exactly as it came (Mandrill signs the URL byte for byte)."""
    raw = request.META.get("QUERY_STRING", "")
    return f"?{raw}" if raw else ""


def _problem(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"status": status, "detail": detail}, status=status)


@csrf_exempt  # authenticated by the provider's signature, never by a cookie
@require_http_methods(["POST", "HEAD", "GET"])
def receive(request: HttpRequest, token: str) -> HttpResponse:
    """Take one provider's webhook request. HEAD/GET answer 200 for a known URL: providers
    (Mandrill) check a URL exists before they post to it."""
    if request.method != "POST":
        return HttpResponse(status=200)
    limit = settings.WEBHOOK_MAX_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    too_large = _problem(413, f"A webhook body may be at most {limit} bytes.")
    if not (length.isascii() and length.isdigit()) or int(length) > limit:
        return too_large
    body = request.read(limit + 1)  # a chunked body has no length to check first
    if len(body) > limit:
        return too_large
    form = {}
    if request.content_type == "application/x-www-form-urlencoded":
        parsed = QueryDict(body, encoding=request.encoding or "utf-8")
        form = {key: parsed.getlist(key) for key in parsed}
    incoming = WebhookRequest(
        method=request.method,
        url=webhook_url(token, base_url=request.build_absolute_uri("/")) + _query(request),
        headers=request.headers,
        body=body,
        query=request.GET.dict(),
        form=form,
    )
    try:
        result = events_ingest(token=token, request=incoming)
    except AppError as exc:
        return _problem(nearest(STATUSES, exc), exc.message)
    if result.handshake is not None:
        return HttpResponse(result.handshake.body, status=result.handshake.status)
    return JsonResponse(
        {"stored": result.stored, "duplicates": result.duplicates, "unmatched": result.unmatched}
    )
