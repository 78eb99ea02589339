"""The /metrics answer: who may read it, and what it holds (every process's counters and the
scrape-time gauges); and the Celery worker's own small server."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from .collectors import CircuitCollector, QueueCollector

logger = logging.getLogger("mailer.metrics")

# The classic text format, which every Prometheus (and most other scrapers) reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


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
