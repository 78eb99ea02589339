"""The health checks: /healthz (liveness) and /readyz (readiness). README: Caching and health."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import selectors


@never_cache
@require_GET
def healthz(request):
    """Liveness: 200 while this process answers and reaches the database, whatever the cache
    does (the service works without it: lists from the database, breaker and rate limit step
    aside). The cache's state is in the body. 503 when the database is unreachable."""
    health = selectors.system_health()
    alive = health["database"] == "ok"
    body = {"status": "ok" if alive else "error", **health}
    return JsonResponse(body, status=200 if alive else 503)


@never_cache
@require_GET
def readyz(request):
    """Readiness: 200 {"status": "ok"} when the database and the cache both answer, else 503
    {"status": "degraded"} naming what is down. For deploy gates and alerting; route traffic
    on /healthz, since with a shared Redis a cache outage would take every instance out."""
    health = selectors.system_health()
    ready = all(value == "ok" for value in health.values())
    body = {"status": "ok" if ready else "degraded", **health}
    response = JsonResponse(body, status=200 if ready else 503)
    # A 503 here is an answer, not a server error: the cause is logged once per outage
    # (mailer.cacheguard) or by the database check, not once more per poll by django.request.
    response._has_been_logged = True
    return response
