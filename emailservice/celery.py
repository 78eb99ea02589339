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
