"""Bench settings: the production settings unchanged, plus a trivial view (bench/urls.py) that
list latency is measured against. Never used outside `make bench`.

BENCH_CONN_MAX_AGE (unset by default) keeps SQLite connections open between requests; it is an
experiment (`python -m bench.run --experiment conn-max-age`) that measures what persistent
connections would gain, not a production setting.
"""

import os

from emailservice.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

if os.environ.get("BENCH_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["BENCH_CONN_MAX_AGE"])  # noqa: F405
