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

import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.dispatch import receiver
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from mailer.delivery.breaker import CLOSED, HALF_OPEN, OPEN, UNKNOWN, circuit_opened
from mailer.delivery.errors import SKIPPED
from mailer.providers.urls import parse_provider_url

logger = logging.getLogger("mailer.metrics")

OTHER = "other"  # the config label of providers past METRICS_MAX_PROVIDER_LABELS
# The classic text format, which every Prometheus (and most other scrapers) reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
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
        if attempt.outcome != SKIPPED:
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


# Read at scrape time ---------------------------------------------------------------------------


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


_STATE_VALUES = {HALF_OPEN: 1, OPEN: 2}


def _circuits() -> Iterable[tuple[str, str, str]]:
    """(breaker key, kind, config label) of every circuit that can be in use: the enabled
    provider configs, then the site's own mailers."""
    from mailer.models import ProviderConfig

    configs = ProviderConfig.objects.filter(enabled=True).order_by("pk").values_list("pk", "kind")
    for pk, kind in configs.iterator(chunk_size=2000):
        yield f"provider:{pk}", kind, str(pk)
    for alias, mailer in settings.MAILERS.items():
        # Named as mailer.backends.FailoverEmailBackend names the providers of its URLs.
        for index, url in enumerate(mailer.get("OPTIONS", {}).get("urls", ()), start=1):
            try:
                kind = parse_provider_url(url)[0]
            except ValueError:
                continue  # `manage.py check` reports it
            name = f"{alias}-{index}-{kind}"
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
        totals = {CLOSED: 0, HALF_OPEN: 0, OPEN: 0, UNKNOWN: 0}
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
            current = states.get(key, UNKNOWN)
            totals[current] = totals.get(current, 0) + 1
            if current in _STATE_VALUES and listed < limit:
                family.add_metric([config, kind], _STATE_VALUES[current])
                listed += 1
        return listed


# Serving ---------------------------------------------------------------------------------------


def enabled() -> bool:
    """/metrics answers only when a token or allowed networks are configured."""
    return bool(settings.METRICS_TOKEN or settings.METRICS_ALLOWED_NETWORKS)


def refusal(authorization: str, client: str) -> int:
    """0 if this request may read the metrics, else the status that refuses it: 404 while
    metrics are off, 403 from outside METRICS_ALLOWED_NETWORKS, 401 without METRICS_TOKEN as
    `Authorization: Bearer`. With both set, both are required."""
    if not enabled():
        return 404
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return 403
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not any(address in ipaddress.ip_network(net, strict=False) for net in networks):
            return 403
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return 401
    return 0


def _multiprocess_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


def render(*, scrape_time: bool = True) -> bytes:
    """The metrics in Prometheus' text format: every process's counters (multiprocess mode) or
    this process's, and with `scrape_time` the gauges read from the database and the cache."""
    if _multiprocess_dir():
        recorded = CollectorRegistry()
        multiprocess.MultiProcessCollector(recorded)
    else:
        recorded = REGISTRY
    body = generate_latest(recorded)
    if scrape_time:
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(QueueCollector())
        gauges.register(CircuitCollector())
        body += generate_latest(gauges)
    return body


def _refused(status: int) -> HttpResponse:
    response = HttpResponse(
        {401: "Unauthorized\n", 403: "Forbidden\n"}.get(status, "Not Found\n"),
        status=status,
        content_type="text/plain; charset=utf-8",
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@never_cache
@require_GET
def metrics_view(request):
    """GET /metrics: 404 unless METRICS_TOKEN or METRICS_ALLOWED_NETWORKS is set (README:
    Metrics). The client's address is mailer.ratelimit.client_ip (TRUSTED_PROXIES honoured)."""
    from mailer.ratelimit import client_ip

    status = refusal(request.headers.get("Authorization", ""), client_ip(request))
    if status:
        response = _refused(status)
        response._has_been_logged = True  # a refusal is an answer, not a server error
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE)


# Celery workers --------------------------------------------------------------------------------


def worker_starting() -> None:
    """celeryd_init (the worker's main process, before its pool forks): empty this worker's
    PROMETHEUS_MULTIPROC_DIR of a previous run's files."""
    path = _multiprocess_dir()
    if path and settings.METRICS_WORKER_PORT:
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))


def worker_process_exited(pid: int) -> None:
    if _multiprocess_dir():
        multiprocess.mark_process_dead(pid)


def _worker_app(environ, start_response):
    client = environ.get("REMOTE_ADDR", "")
    if environ.get("PATH_INFO", "") != "/metrics":
        status = 404
    else:
        status = refusal(environ.get("HTTP_AUTHORIZATION", ""), client)
    if status:
        reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}[status]
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {reason}", headers)
        return [f"{reason}\n".encode()]
    body = render(scrape_time=False)
    start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
    return [body]


def serve_worker_metrics() -> object | None:
    """worker_ready (the worker's main process): serve its pool's counters on
    METRICS_WORKER_PORT at /metrics, protected as the web's. Returns the server, or None when
    not configured. The gauges read at scrape time are the web's alone (the same everywhere)."""
    port = settings.METRICS_WORKER_PORT
    if not port:
        return None
    if not enabled():
        logger.warning(
            "METRICS_WORKER_PORT is set but neither METRICS_TOKEN nor METRICS_ALLOWED_NETWORKS:"
            " the worker's metrics are not served"
        )
        return None
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    server = make_server(
        "0.0.0.0",  # noqa: S104 (a worker host has no proxy in front; refusal() guards it)
        port,
        _worker_app,
        server_class=ThreadingWSGIServer,
        handler_class=Quiet,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("serving this worker's metrics on port %s at /metrics", port)
    return server
