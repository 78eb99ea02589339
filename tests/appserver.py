"""The real app under gunicorn with production settings, on a free loopback port, for tests
that need real processes: concurrency across workers, fuzzing over HTTP, Celery workers.
Its database is fresh for each server: on the run's PostgreSQL server when DATABASE_URL is set
(the CI's second run), else a SQLite file in the test's tmp directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.smtp import free_port
from tests.live import stop_group
from tests.livedb import LiveDatabase, fresh_database

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class AppServer:
    url: str
    env: dict[str, str]
    database: LiveDatabase | None = None
    process: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str, code: str | None = None) -> str:
        command = [sys.executable, "manage.py", *args]
        if code is not None:
            command += ["shell", "-c", code]
        result = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {args} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        token: str | None = None,
        headers: dict | None = None,
    ) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def stop(self) -> None:
        """Stop gunicorn, then drop its database (stop the workers using it first)."""
        try:
            if self.process is not None:
                stop_group(self.process, grace=30)
        finally:
            if self.database is not None:
                self.database.drop()


def production_env(tmp: Path, database: LiveDatabase | None = None, **extra: str) -> dict[str, str]:
    """Production settings (DEBUG off) on the given database (default: SQLite in tmp) and the
    test run's Redis."""
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp)),
        "DJANGO_SETTINGS_MODULE": "emailservice.settings",
        "ENV_FILE": str(tmp / "no.env"),
        "SECRET_KEY": "live-test-" + "k" * 50,
        "ENCRYPTION_KEYS": os.environ["ENCRYPTION_KEYS"],
        "SQLITE_PATH": str(tmp / "live.sqlite3"),
        "STATIC_ROOT": str(tmp / "static"),
        "REDIS_URL": os.environ["REDIS_URL"],
        "CACHE_KEY_PREFIX": f"live-{tmp.name}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ALLOW_PRIVATE_PROVIDER_HOSTS": "true",
        "SECURE_SSL_REDIRECT": "false",
        "PROVIDER_TIMEOUT": "2",
        "PROVIDER_CONNECT_TIMEOUT": "1",
        "API_RATE_LIMIT": "100000/minute",
        "MAIL_PROVIDER_URLS": "smtp://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    if database is not None:
        env.pop("SQLITE_PATH")
        env.update(database.env)
    env.update(extra)
    return env


def start_app_server(tmp: Path, *, workers: int = 4, **extra_env: str) -> AppServer:
    port = free_port()
    database = fresh_database(tmp)
    server = AppServer(
        url=f"http://127.0.0.1:{port}",
        env=production_env(tmp, database, **extra_env),
        database=database,
    )
    try:
        server.manage("migrate", "--noinput", "-v", "0")
        server.manage("collectstatic", "--noinput", "-v", "0")
    except BaseException:
        database.drop()
        raise
    server.process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "emailservice/gunicorn.conf.py",  # the worker timeout: WEB_TIMEOUT
            "emailservice.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--graceful-timeout",
            "5",
        ],
        cwd=ROOT,
        env=server.env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "gunicorn.log", "w"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError("gunicorn did not come up:\n" + (tmp / "gunicorn.log").read_text())


def create_account(server: AppServer, username: str, *, smtp_port: int | None = None) -> str:
    """A user with an API token (returned) and, optionally, an SMTP provider on smtp_port."""
    provider = ""
    if smtp_port is not None:
        provider = (
            "provider_config_create(account=user, kind='smtp', name='sink', settings="
            f"{{'host': '127.0.0.1', 'port': {smtp_port}, 'security': 'none'}})\n"
        )
    out = server.manage(
        code=(
            "from django.contrib.auth import get_user_model\n"
            "from mailer.services import provider_config_create, token_create\n"
            f"user = get_user_model().objects.create_user({username!r}, "
            f"email='{username}@example.com')\n"
            f"{provider}"
            "print(token_create(account=user, name='live')[1])\n"
        )
    )
    return out.strip().splitlines()[-1]
