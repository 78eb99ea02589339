"""The Celery app of item 4's peer, django-post_office: configured from Django settings
(CELERY_*, the same as the app's queue mode) with `bench.postoffice_settings`, tasks found by
autodiscovery as post_office's README asks (post_office.tasks.send_queued_mail), on a queue of
its own on the same Redis.

Worker: celery -A bench.postoffice_celery worker (bench/postoffice_peer.py starts it as it
starts the app's workers).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.postoffice_settings")

QUEUE = "bench-postoffice"

app = Celery("bench-postoffice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(task_default_queue=QUEUE, beat_schedule={})
app.autodiscover_tasks()
