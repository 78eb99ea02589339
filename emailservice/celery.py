"""The Celery app of queue mode: configured from Django settings (CELERY_*), tasks in mailer."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailservice.settings")

app = Celery("emailservice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
@signals.beat_init.connect
def _require_a_broker(**kwargs) -> None:
    """Without a broker URL Celery would quietly try amqp://localhost; say what is missing."""
    if not app.conf.broker_url:
        raise SystemExit("queue mode needs Redis: set REDIS_URL (or CELERY_BROKER_URL)")


# Database connections live across tasks as they do across requests: CONN_MAX_AGE and
# CONN_HEALTH_CHECKS (settings) decide, not a reconnect per task. Celery's Django fixup closes
# every connection before and after each task whatever CONN_MAX_AGE says (celery 5.7,
# DjangoWorkerFixup.close_database -> conn.close()), unless CELERY_DB_REUSE_MAX is set, and then
# only once per that many tasks: settings sets it high, and this does per task what Django does
# per request (close_old_connections): close a connection past CONN_MAX_AGE, one whose errors
# made it unusable, or one left outside autocommit, and re-arm the health check, so the next
# query on a kept connection first checks it still works.
@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(sender=None, **kwargs) -> None:
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run in the caller's process: its connections are the caller's to manage
    from django.db import close_old_connections

    close_old_connections()


# Metrics (README: Metrics): with METRICS_WORKER_PORT set, the worker's main process serves the
# counters of its pool processes, which write them in PROMETHEUS_MULTIPROC_DIR (mailer.metrics).
@signals.celeryd_init.connect
def _metrics_start_clean(**kwargs) -> None:
    from mailer import metrics

    metrics.worker_starting()


@signals.worker_ready.connect
def _metrics_serve(**kwargs) -> None:
    from mailer import metrics

    metrics.serve_worker_metrics()


@signals.worker_process_shutdown.connect
def _metrics_process_exited(pid=None, **kwargs) -> None:
    from mailer import metrics

    metrics.worker_process_exited(pid or os.getpid())
