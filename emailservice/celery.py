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
