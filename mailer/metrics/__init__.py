"""Prometheus metrics (README: Metrics): what is counted where, and the /metrics answer.

Counters and histograms are recorded where things happen (services record attempts and the end
of each try, the list selector its cache hits, the breaker says when a circuit opens). Under
gunicorn they live in prometheus_client's multiprocess mode: `emailservice/gunicorn.conf.py`
gives every worker one PROMETHEUS_MULTIPROC_DIR (emptied when gunicorn starts) and each worker
writes its own memory-mapped file there, so a scrape answered by any worker adds up all of them,
those that died included (a dead worker's counts stay in the sum, as a counter must). Celery
workers do the same in a directory of their own and serve it themselves (METRICS_WORKER_PORT,
`serve_worker_metrics`).

Gauges are not recorded but read at scrape time from the source of truth, by the process that
answers: the queue from one indexed query, the circuits from the breaker's shared state in the
cache. So they agree on every host and count what Celery workers and other hosts did too.

Labels stay bounded: provider configs are per account and can be many, so they are labelled by
id (`config`, never a name) and kind, at most METRICS_MAX_PROVIDER_LABELS ids per process (the
rest are counted as config="other"); circuits are listed only while not closed, at most
METRICS_MAX_CIRCUITS of them, with totals per state beside them.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.dispatch import receiver
from prometheus_client import Counter, Histogram, disable_created_metrics

from mailer.delivery.breaker import circuit_opened
from mailer.vocabulary import Outcome

logger = logging.getLogger("mailer.metrics")

OTHER = "other"  # the config label of providers past METRICS_MAX_PROVIDER_LABELS
# No `_created` series: multiprocess mode has none, so a single process shows the same set.
disable_created_metrics()

# Recorded ------------------------------------------------------------------------------------

ATTEMPTS = Counter(
    "emailservice_provider_attempts",
    "Delivery attempts by provider kind, provider config (its id; `default-N-kind` for the "
    "site's own mailers) and outcome: sent, rejected, provider_error, ambiguous, skipped.",
    ["kind", "config", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "emailservice_provider_attempt_duration_seconds",
    "How long one attempt took, by provider kind and outcome (skipped attempts, which contact "
    "no provider, are not observed).",
    ["kind", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
FAILOVERS = Counter(
    "emailservice_failovers",
    "Messages accepted by a provider other than the first one in their order (the first failed "
    "or its circuit was open), by the kind of the provider that accepted them.",
    ["kind"],
)
CIRCUIT_OPENINGS = Counter(
    "emailservice_circuit_openings",
    "Times a circuit opened (or opened again after a failed probe), counted by the process "
    "whose failure opened it.",
)
SENDS = Counter(
    "emailservice_sends",
    "Tries of stored emails that ended, by delivery mode (sync, queue) and the status the email "
    "was left in: sent or failed (final), or queued (to be tried again).",
    ["mode", "status"],
)
LIST_CACHE_HITS = Counter("emailservice_list_cache_hits", "Email list pages served from the cache.")
LIST_CACHE_MISSES = Counter(
    "emailservice_list_cache_misses",
    "Email list pages read from the database: not cached yet, or the cache unreachable.",
)

_config_labels: set[str] = set()
_config_labels_lock = threading.Lock()


def _config_label(config: str) -> str:
    """The `config` label: the config itself for the first METRICS_MAX_PROVIDER_LABELS seen by
    this process, OTHER after that (the label values of one process stay bounded)."""
    if config in _config_labels:
        return config
    with _config_labels_lock:
        if len(_config_labels) < settings.METRICS_MAX_PROVIDER_LABELS:
            _config_labels.add(config)
            return config
    return OTHER


def _provider_of(candidate) -> tuple[str, str]:
    """(kind, config) of a failover candidate: a ProviderConfig (its id), or one of the site's
    own mailers (its name in the breaker's key, e.g. `default-1-smtp`)."""
    config = candidate.ref
    if config is not None:
        return config.kind, str(config.pk)
    return getattr(candidate.provider, "kind", "") or "unknown", candidate.key.split(":", 1)[-1]


def attempt_finished(attempt) -> None:
    """One delivery attempt ended (mailer.delivery.failover.Attempt). Never raises."""
    try:
        kind, config = _provider_of(attempt.candidate)
        ATTEMPTS.labels(kind, _config_label(config), attempt.outcome).inc()
        if attempt.outcome != Outcome.SKIPPED:
            ATTEMPT_SECONDS.labels(kind, attempt.outcome).observe(attempt.duration)
    except Exception:  # metrics must never cost a delivery
        logger.exception("metrics: recording an attempt failed")


def delivery_finished(delivery) -> None:
    """A failover over one message ended (mailer.delivery.failover.Delivery)."""
    accepted = delivery.accepted
    if accepted is not None and len(delivery.attempts) > 1:
        FAILOVERS.labels(_provider_of(accepted.candidate)[0]).inc()


def send_finished(status: str) -> None:
    """A try of a stored email ended and left it in `status`."""
    SENDS.labels(settings.DELIVERY_MODE, status).inc()


def list_page(*, cached: bool) -> None:
    (LIST_CACHE_HITS if cached else LIST_CACHE_MISSES).inc()


@receiver(circuit_opened, dispatch_uid="mailer.metrics.circuit_opened")
def _circuit_opened(sender, key: str, **kwargs) -> None:
    CIRCUIT_OPENINGS.inc()


from .collectors import CircuitCollector, QueueCollector  # noqa: E402
from .serving import (  # noqa: E402
    metrics_view,
    refusal,
    render,
    serve_worker_metrics,
    worker_process_exited,
    worker_starting,
)

__all__ = [
    "ATTEMPTS",
    "ATTEMPT_SECONDS",
    "CIRCUIT_OPENINGS",
    "FAILOVERS",
    "LIST_CACHE_HITS",
    "LIST_CACHE_MISSES",
    "SENDS",
    "CircuitCollector",
    "QueueCollector",
    "attempt_finished",
    "delivery_finished",
    "list_page",
    "metrics_view",
    "refusal",
    "render",
    "send_finished",
    "serve_worker_metrics",
    "worker_process_exited",
    "worker_starting",
]  # fmt: skip
