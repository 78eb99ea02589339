"""Provider health page: last 24 hours of attempts per provider, as stacked bars and a table."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mailer.delivery.breaker import breaker
from mailer.selectors.stats import HEALTH_WINDOW, PERCENTILES, ProviderHealth, provider_health
from mailer.vocabulary import Outcome


def _percent(share: float) -> str:
    return "<1" if 0 < share < 0.005 else f"{100 * share:.0f}"


def _outcomes(health: ProviderHealth) -> list[dict]:
    """Each outcome's count and share, and its segment of the provider's stacked bar (x and
    width in percent of the bar, as SVG attribute values)."""
    cells, x = [], 0.0
    for outcome in Outcome:
        share = health.share(outcome)
        cells.append(
            {
                "outcome": outcome,
                "label": outcome.label,
                "count": health.counts[outcome],
                "percent": _percent(share),
                "x": f"{x:.3f}",
                "width": f"{100 * share:.3f}",
            }
        )
        x += 100 * share
    return cells


@login_required
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    circuit_breaker = breaker()  # its state() answers "unknown" when the cache is down
    rows = [
        {
            "health": item,
            "outcomes": _outcomes(item),
            "latency": [(p, item.latency[p]) for p in PERCENTILES],
            "circuit": circuit_breaker.state(item.provider.breaker_key).state,
        }
        for item in provider_health(account=request.user)
    ]
    return render(
        request,
        "health/health.html",
        {
            "rows": rows,
            "outcomes": Outcome.choices,
            "percentiles": PERCENTILES,
            "window_hours": int(HEALTH_WINDOW.total_seconds() // 3600),
        },
    )
