"""Settings of item 4's peer, django-post_office (pinned in requirements-dev.txt): the bench's
settings (bench/settings.py, so the same CELERY_* settings, Redis and SQLite options) plus
`post_office`, configured as its README says for Django 6.1's MAILERS and its Celery
integration. Used only by the peer's processes: the load generator that queues with
`mail.send`, `manage.py migrate`, and `celery -A bench.postoffice_celery worker`.

From the environment (bench/postoffice_peer.py sets them): BENCH_POSTOFFICE_DB, the peer's own
SQLite file in the bench's work directory; BENCH_POSTOFFICE_LOCK, post_office's lock file
(there too, so no other process on the machine shares /tmp/post_office.lock); and
BENCH_PEER_SMTP_PORT, the sink.
"""

import os

from bench.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "post_office"]  # noqa: F405

DATABASES = {
    "default": {**DATABASES["default"], "NAME": os.environ["BENCH_POSTOFFICE_DB"]},  # noqa: F405
}

# post_office's README, Django >= 6.1: MAILERS["default"] is where the app queues email;
# POST_OFFICE["DEFAULT_MAILER"] names the mailer it delivers through (Django's SMTP backend).
MAILERS = {
    "default": {"BACKEND": "post_office.EmailBackend"},
    "smtp": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": "127.0.0.1",
            "port": int(os.environ["BENCH_PEER_SMTP_PORT"]),
            "timeout": PROVIDER_TIMEOUT,  # noqa: F405
        },
    },
}

# Its defaults otherwise: batches of 100, 5 sending threads per process, a Log row per email.
POST_OFFICE = {
    "DEFAULT_MAILER": "smtp",
    "CELERY_ENABLED": True,  # each queued email publishes send_queued_mail after its commit
    "LOCK_FILE_NAME": os.environ["BENCH_POSTOFFICE_LOCK"],
}
