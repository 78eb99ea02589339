"""gunicorn's settings for every way we serve (make run, tests, bench, the Dockerfile).

Read by gunicorn itself (`gunicorn -c emailservice/gunicorn.conf.py emailservice.wsgi`): plain
environment reads only, no Django. The worker timeout is WEB_TIMEOUT, the same variable the
settings check SEND_BUDGET_SECONDS against, so a sync send always ends before its worker is killed.
"""

import os
import shutil
import tempfile

timeout = int(float(os.environ.get("WEB_TIMEOUT", "30")))
graceful_timeout = int(float(os.environ.get("WEB_GRACEFUL_TIMEOUT", "10")))

# No credential reaches a log line: emailservice/logredact.py.
logger_class = "emailservice.logredact.RedactingLogger"

# Metrics (README: Metrics): prometheus_client's multiprocess mode, so that a scrape answered by
# any worker adds up the counters of all of them. Every worker writes its own files in one
# directory: PROMETHEUS_MULTIPROC_DIR if the environment names one (this server's alone), else
# a fresh temporary one. It must be in the environment before a worker imports the app, so it is
# set here, in the master, when gunicorn reads this file.
_METRICS_TEMP_PREFIX = "emailservice-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_TEMP_PREFIX)
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):
    """The master, before any worker: start from zero (files of a previous run would be added
    to this one's, and their processes are gone)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker):
    """A worker exited: its counters stay in the sum; its live gauges (if any) go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The master stops: remove the directory if it is the temporary one made above."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    made_here = os.path.dirname(directory) == tempfile.gettempdir() and os.path.basename(
        directory
    ).startswith(_METRICS_TEMP_PREFIX)
    if made_here:
        shutil.rmtree(directory, ignore_errors=True)
