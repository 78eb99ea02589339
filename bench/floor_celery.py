"""Item 4's durable floor: a Celery app whose one task does the least a queued send that keeps
every email, attempt and outcome must do, with none of the service around it. Configured from
Django settings (`bench.settings`: the same CELERY_* settings as the app's queue mode) on a
queue of its own on the same Redis.

`bench.floor_send(email_id)` claims the email (one UPDATE from `queued` to `sending`; nothing to
do when no row changed), reads it, sends it on the process's kept SMTP connection to the sink,
and in one transaction stores its DeliveryAttempt and marks it `sent` (bench/floor.py). No
failover, circuit breaker, pacing, suppression check, retries, webhooks, metrics or list cache.

Worker: celery -A bench.floor_celery worker (bench/floor_queue.py starts it as the others).
"""

from __future__ import annotations

import os

import django
from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.db.models import F  # noqa: E402

from bench import floor  # noqa: E402
from mailer.models import Email  # noqa: E402
from mailer.vocabulary import EmailStatus  # noqa: E402

QUEUE = "bench-floor"

app = Celery("bench-floor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(task_default_queue=QUEUE, beat_schedule={})


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(sender=None, **kwargs) -> None:
    """What Django does around a request (and emailservice/celery.py around a task): close a
    connection past CONN_MAX_AGE or broken, keep the others."""
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()


@app.task(name="bench.floor_send")
def floor_send(email_id: int) -> None:
    state = floor.claimed_state(settings.SENDING_LEASE_SECONDS)
    state["tries"] = F("tries") + 1
    claimed = Email.objects.filter(pk=email_id, status=EmailStatus.QUEUED).update(
        **state, updated_at=state["claimed_at"]
    )
    if not claimed:
        return
    floor.deliver(Email.objects.get(pk=email_id))
