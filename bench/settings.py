"""Bench settings: the production settings unchanged, plus a trivial view (bench/urls.py) that
list latency is measured against, and the sync-send peer's mailer. Never used outside
`make bench`.

BENCH_PEER_SMTP_PORT (set by the bench to the sink's port) adds the MAILERS alias "bench-peer":
Django's own SMTP backend pointed at the sink, which the peer view (bench/peer_views.py) sends
through with `send_mail(..., using="bench-peer")`. The app never names that alias.

BENCH_CONN_MAX_AGE (unset by default) keeps SQLite connections open between requests; it is an
experiment (`python -m bench.run --experiment conn-max-age`) that measures what persistent
connections would gain, not a production setting.
"""

import os

from emailservice.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

PEER_MAILER = "bench-peer"
if os.environ.get("BENCH_PEER_SMTP_PORT"):
    # A copy: emailservice.settings' own dict stays as it is.
    MAILERS = {
        **MAILERS,  # noqa: F405
        PEER_MAILER: {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": "127.0.0.1",
                "port": int(os.environ["BENCH_PEER_SMTP_PORT"]),
                "timeout": PROVIDER_TIMEOUT,  # noqa: F405
            },
        },
    }

if os.environ.get("BENCH_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["BENCH_CONN_MAX_AGE"])  # noqa: F405
