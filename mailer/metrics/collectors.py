"""Gauges read at scrape time from the source of truth: the queue from one indexed query, the
circuits from the breaker's shared state in the cache."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from mailer.providers.urls import parse_provider_url
from mailer.vocabulary import CircuitState

logger = logging.getLogger("mailer.metrics")


class QueueCollector:
    """Queued emails, and how long the most overdue of them has been due, from one query over
    the partial index of queued emails (email_queued_due: only the queued rows)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Min, Q

        from mailer.models import Email, EmailStatus

        now = timezone.now()
        try:
            row = Email.objects.filter(status=EmailStatus.QUEUED).aggregate(
                depth=Count("*"),
                due=Count("next_attempt_at", filter=Q(next_attempt_at__lte=now)),
                oldest=Min("next_attempt_at"),
            )
        except Exception as exc:
            logger.warning("metrics: the queue query failed: %s", exc)
            return
        yield GaugeMetricFamily(
            "emailservice_queue_depth",
            "Emails queued: due now, or waiting for their next try.",
            value=row["depth"],
        )
        yield GaugeMetricFamily(
            "emailservice_queue_due", "Queued emails that are due now.", value=row["due"]
        )
        oldest = row["oldest"]
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "emailservice_queue_oldest_age_seconds",
            "How long the longest-waiting queued email has been due (0 when none is due): "
            "grows when no worker (or, in sync mode, no sweep) keeps up.",
            value=age,
        )


_STATE_VALUES = {CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


def _circuits() -> Iterable[tuple[str, str, str]]:
    """(breaker key, kind, config label) of every circuit that can be in use: the enabled
    provider configs, then the site's own mailers."""
    from mailer.backends import url_circuit_name
    from mailer.models import ProviderConfig

    configs = ProviderConfig.objects.filter(enabled=True).order_by("pk").values_list("pk", "kind")
    for pk, kind in configs.iterator(chunk_size=2000):
        yield f"provider:{pk}", kind, str(pk)
    for alias, mailer in settings.MAILERS.items():
        for index, url in enumerate(mailer.get("OPTIONS", {}).get("urls", ()), start=1):
            try:
                kind = parse_provider_url(url)[0]
            except ValueError:
                continue  # `manage.py check` reports it
            name = url_circuit_name(alias, index, kind)
            yield f"mailer:{name}", kind, name


class CircuitCollector:
    """Circuit states from the breaker's shared state in the cache: one read per 500 circuits.

    Open and half-open circuits are listed one by one (at most METRICS_MAX_CIRCUITS, the rest
    counted in the totals only); closed ones only in the totals, so the series stay few however
    many provider configs the accounts have."""

    CHUNK = 500

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from mailer.delivery.breaker import breaker

        state = GaugeMetricFamily(
            "emailservice_circuit_state",
            "Circuits that are not closed, by provider config (id, or the site mailer's alias) "
            "and kind: 2 open, 1 half-open (its next attempt is a probe). Absent: closed.",
            labels=["config", "kind"],
        )
        totals = {
            CircuitState.CLOSED: 0,
            CircuitState.HALF_OPEN: 0,
            CircuitState.OPEN: 0,
            CircuitState.UNKNOWN: 0,
        }
        circuit_breaker = breaker()
        listed, limit = 0, settings.METRICS_MAX_CIRCUITS
        chunk: list[tuple[str, str, str]] = []
        try:
            for circuit in _circuits():
                chunk.append(circuit)
                if len(chunk) == self.CHUNK:
                    listed = self._read(circuit_breaker, chunk, state, totals, listed, limit)
                    chunk = []
            listed = self._read(circuit_breaker, chunk, state, totals, listed, limit)
        except Exception as exc:
            logger.warning("metrics: reading the circuits failed: %s", exc)
            return
        yield state
        total = GaugeMetricFamily(
            "emailservice_circuits",
            "Circuits of enabled provider configs and site mailers by state (unknown: the "
            "cache holding their state did not answer).",
            labels=["state"],
        )
        for name, count in totals.items():
            total.add_metric([name.replace("-", "_")], count)
        yield total

    @staticmethod
    def _read(circuit_breaker, chunk, family, totals, listed: int, limit: int) -> int:
        if not chunk:
            return listed
        states = circuit_breaker.states([key for key, _, _ in chunk])
        for key, kind, config in chunk:
            current = states.get(key, CircuitState.UNKNOWN)
            totals[current] = totals.get(current, 0) + 1
            if current in _STATE_VALUES and listed < limit:
                family.add_metric([config, kind], _STATE_VALUES[current])
                listed += 1
        return listed
