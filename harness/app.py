"""The app's own processes on loopback: its environment (production settings, changed only where
loopback needs it), gunicorn, Celery workers and `manage.py` commands."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness import ROOT, procs
from harness.api import ApiClient
from harness.ports import HOST
from harness.waiting import wait_until

PYTHON = sys.executable
GUNICORN_CONF = "emailservice/gunicorn.conf.py"  # the worker timeout: WEB_TIMEOUT


def loopback_env(
    workdir: Path, *, redis_url: str, encryption_keys: str, secret_key: str, **extra: str
) -> dict[str, str]:
    """Production settings (DEBUG off, emailservice.settings unless DJANGO_SETTINGS_MODULE is in
    `extra`) on a SQLite file in workdir and the given Redis, and nothing of the caller's
    environment but PATH and HOME. Changed from production only where loopback needs it: plain
    HTTP (no TLS proxy), providers on loopback, short provider timeouts, no rate limit to speak
    of (requests are still counted in Redis)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(workdir)),
        "DJANGO_SETTINGS_MODULE": "emailservice.settings",
        "ENV_FILE": str(workdir / "no.env"),
        "SECRET_KEY": secret_key,
        "ENCRYPTION_KEYS": encryption_keys,
        "SQLITE_PATH": str(workdir / "live.sqlite3"),
        "STATIC_ROOT": str(workdir / "static"),
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": f"live-{workdir.name}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ALLOW_PRIVATE_PROVIDER_HOSTS": "true",
        "SECURE_SSL_REDIRECT": "false",
        "PROVIDER_TIMEOUT": "2",
        "PROVIDER_CONNECT_TIMEOUT": "1",
        "API_RATE_LIMIT": "1000000000/minute",
        "MAIL_PROVIDER_URLS": "smtp://127.0.0.1:9?security=none",
        "LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300, **run) -> str:
    """`manage.py ARGS` with env; its output, or AssertionError with it on failure."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False, **run,
    )  # fmt: skip
    if result.returncode != 0:
        command = " ".join(args)
        raise AssertionError(f"manage.py {command} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def factory(env: dict[str, str], *args: str):
    """`python -m harness.factories ARGS` with env (a live server's database): its JSON answer."""
    out = subprocess.run(
        [PYTHON, "-m", "harness.factories", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise AssertionError(f"harness.factories {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gunicorn_command(bind: str, *options: str) -> list[str]:
    """gunicorn serving the app with its config file (make run, the tests, the bench)."""
    return [PYTHON, "-m", "gunicorn", "-c", GUNICORN_CONF, "emailservice.wsgi", "--bind", bind,
            *options]  # fmt: skip


def healthy(url: str) -> bool:
    """/healthz answers 200."""
    try:
        return ApiClient.http(url, timeout=5).get("/healthz").status_code == 200
    except (OSError, http.client.HTTPException):
        return False


def start_gunicorn(
    env: dict[str, str], *, port: int, workers: int, log: Path, options: tuple[str, ...] = ()
) -> subprocess.Popen:
    """gunicorn with `workers` sync workers on 127.0.0.1:port, once /healthz answers 200."""
    process = procs.start(
        gunicorn_command(f"{HOST}:{port}", "--workers", str(workers), "--graceful-timeout", "5",
                         *options),
        env=env, log=log,
    )  # fmt: skip
    try:
        wait_until(lambda: healthy(f"http://{HOST}:{port}"), timeout=120, every=0.2,
                   process=process, what=f"gunicorn to answer /healthz on port {port}")  # fmt: skip
    except BaseException as error:
        procs.stop_group(process, grace=10)
        raise AssertionError(f"{error}\n{log.read_text(errors='replace')[-5000:]}") from None
    return process


def celery_worker_command(
    name: str,
    *,
    app: str = "emailservice",
    concurrency: int = 2,
    pool: str = "prefork",
    loglevel: str = "INFO",
    beat: bool = False,
) -> list[str]:
    """With beat: the sweep's schedule runs inside this worker, kept in memory. (The default,
    file-backed scheduler stores it with shelve, which on Python 3.13 is SQLite in WAL mode: on
    a loaded machine a write can fail with "locking protocol", and beat dies while the worker
    runs on without it.)"""
    command = [
        PYTHON, "-m", "celery", "-A", app, "worker", "--hostname", f"{name}@%h",
        "--pool", pool, "--concurrency", str(concurrency), "--loglevel", loglevel,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if beat:
        command += ["--beat", "--scheduler", "celery.beat:Scheduler"]
    return command


def start_celery_worker(
    env: dict[str, str], name: str, *, log: Path, ready: bool = True, **options
) -> subprocess.Popen:
    """A Celery worker (options: celery_worker_command's); with `ready`, returns once it logged
    that it is ready to take tasks (its log level must then be INFO or lower)."""
    process = procs.start(celery_worker_command(name, **options), env=env, log=log)
    if ready:
        try:
            wait_until(lambda: " ready." in log.read_text(errors="replace"), timeout=120,
                       process=process, what=f"Celery worker {name} to be ready")  # fmt: skip
        except BaseException as error:
            procs.stop_group(process, sig=signal.SIGKILL, grace=5)
            raise AssertionError(f"{error}\n{log.read_text(errors='replace')[-5000:]}") from None
    return process
