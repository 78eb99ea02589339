"""The raw Celery baseline: a task that does nothing, on the same broker and with the same
CELERY_* settings as the app's queue mode, but its own queue and none of the app's code.

Worker: celery -A bench.noop worker (bench.run starts it as it starts the app's workers).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("bench-noop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(task_default_queue="bench-noop", beat_schedule={})


@app.task(name="bench.noop")
def noop() -> None:
    return None
