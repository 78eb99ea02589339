"""Server-rendered pages and the health check."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from . import selectors


@require_GET
def healthz(request):
    health = selectors.system_health()
    ok = all(value == "ok" for value in health.values())
    return JsonResponse({"status": "ok" if ok else "degraded", **health}, status=200 if ok else 503)
