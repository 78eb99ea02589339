"""Provider health page: last 24 hours of attempts per provider, as stacked bars and a table;
then the delivered / bounced / complained rates of the providers' events per hour or day."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mailer.delivery.breaker import breaker
from mailer.selectors.stats import (
    HEALTH_WINDOW,
    PERCENTILES,
    RATE_RANGES,
    RATE_TYPES,
    ProviderHealth,
    ProviderRates,
    RateBucket,
    delivery_rates,
    provider_health,
)
from mailer.vocabulary import EventType, Outcome

# The rates chart: each type's colour (SVG fill attributes: the CSP allows them), and the least
# height, in percent of a bar, of a type that had any events, so a rare complaint stays visible.
RATE_COLOURS = {EventType.DELIVERED: "#146c43", EventType.BOUNCED: "#b02a37",
                EventType.COMPLAINED: "#6f42c1"}  # fmt: skip
MIN_SEGMENT = 2.0
BAR_PITCH, BAR_WIDTH = 10, 8  # chart units per bucket, and of its bar
# How a bucket's start is written: on the axis, and in the table and tooltips.
BUCKET_FORMATS = {"hour": ("H:i", "j M, H:i"), "day": ("D j M", "D j M Y")}


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


def _rate_percent(share: float) -> str:
    """A rate to one decimal, never rounded to 0 or 100 when it is not."""
    if 0 < share < 0.001:
        return "<0.1"
    if 0.999 < share < 1:
        return ">99.9"
    return f"{100 * share:.1f}".removesuffix(".0")


def _segments(bucket: RateBucket, x: int) -> list[dict]:
    """The bucket's stacked bar, delivered at the bottom: y and height in chart units (100
    high), each type with events at least MIN_SEGMENT high, scaled to fill the bar."""
    heights = {t: max(MIN_SEGMENT, 100 * bucket.rate(t)) for t in RATE_TYPES if bucket.counts[t]}
    scale = 100 / sum(heights.values()) if heights else 0
    segments, top = [], 100.0
    for event_type, height in heights.items():
        height *= scale
        top -= height
        segments.append(
            {
                "type": event_type,
                "fill": RATE_COLOURS[event_type],
                "x": x,
                "width": BAR_WIDTH,
                "y": f"{top:.3f}",
                "height": f"{height:.3f}",
            }
        )
    return segments


def _cells(bucket: RateBucket) -> list[dict]:
    """Each type's count and rate, and the words for it (a tooltip, a title)."""
    cells = []
    for event_type in RATE_TYPES:
        rate = bucket.rate(event_type)
        percent = None if rate is None else _rate_percent(rate)
        count = bucket.counts[event_type]
        words = f"{percent}% {event_type.label.lower()} ({count})"
        cells.append(
            {
                "type": event_type,
                "label": event_type.label,
                "count": count,
                "percent": percent,
                "words": words,
            }
        )
    return cells


def _words(bucket: RateBucket) -> str:
    """The bucket's rates in words, or "no events"."""
    if not bucket.total:
        return "no events"
    return ", ".join(cell["words"] for cell in _cells(bucket))


def _rate_row(item: ProviderRates, unit: str) -> dict:
    """One provider's chart and table: a bar per bucket, oldest first."""
    axis, full = BUCKET_FORMATS[unit]
    bars = []
    for n, bucket in enumerate(item.buckets):
        x = n * BAR_PITCH + (BAR_PITCH - BAR_WIDTH) // 2
        bars.append(
            {
                "start": bucket.start,
                "total": bucket.total,
                "x": x,
                "cells": _cells(bucket),
                "segments": _segments(bucket, x),
                "words": _words(bucket),
            }
        )
    return {
        "provider": item.provider,
        "bars": bars,
        "total": item.overall.total,
        "summary": _words(item.overall),
        "width": len(bars) * BAR_PITCH,
        "bar_width": BAR_WIDTH,
        "axis_format": axis,
        "format": full,
    }


def _rates_context(request: HttpRequest, providers: list) -> dict:
    """The rates section: the chosen range (?range=, else 24h) and its rows."""
    chosen = RATE_RANGES.get(request.GET.get("range", ""), RATE_RANGES["24h"])
    items = delivery_rates(account=request.user, span=chosen.key, providers=providers)
    return {
        "rate_range": chosen,
        "rate_ranges": RATE_RANGES.values(),
        "rate_rows": [_rate_row(item, chosen.unit) for item in items],
        "rate_types": [(t, t.label, RATE_COLOURS[t]) for t in RATE_TYPES],
    }


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
            **_rates_context(request, [row["health"].provider for row in rows]),
        },
    )
