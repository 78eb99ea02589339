"""The real app under gunicorn with production settings, on a free loopback port, for tests
that need real processes: concurrency across workers, fuzzing over HTTP, Celery workers.
Its database is fresh for each server: on the run's PostgreSQL server when DATABASE_URL is set
(the CI's second run), else a SQLite file in the test's tmp directory."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import procs
from harness.api import ApiClient
from harness.app import factory, loopback_env, manage, start_gunicorn
from harness.ports import free_port
from tests.livedb import LiveDatabase, fresh_database


@dataclass
class AppServer:
    url: str
    env: dict[str, str]
    database: LiveDatabase | None = None
    process: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str) -> str:
        """`manage.py ARGS` against this server's database and settings; its output."""
        return manage(self.env, *args)

    def factory(self, *args: str):
        """`python -m harness.factories ARGS` against this server's database: its JSON answer."""
        return factory(self.env, *args)

    def api(self, token: str | None = None) -> ApiClient:
        """The API over HTTP, as the account whose token is given."""
        return ApiClient.http(self.url, token)

    def stop(self) -> None:
        """Stop gunicorn, then drop its database (stop the workers using it first)."""
        try:
            if self.process is not None:
                procs.stop_group(self.process, grace=30)
        finally:
            if self.database is not None:
                self.database.drop()


def production_env(tmp: Path, database: LiveDatabase | None = None, **extra: str) -> dict[str, str]:
    """Production settings (DEBUG off) on the given database (default: SQLite in tmp) and the
    test run's Redis, with the test run's encryption keys."""
    env = loopback_env(
        tmp,
        redis_url=os.environ["REDIS_URL"],
        encryption_keys=os.environ["ENCRYPTION_KEYS"],
        secret_key="live-test-" + "k" * 50,
        API_RATE_LIMIT="100000/minute",
    )
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
        server.process = start_gunicorn(
            server.env, port=port, workers=workers, log=tmp / "gunicorn.log"
        )
    except BaseException:
        database.drop()
        raise
    return server


def create_account(
    server: AppServer, username: str, *, smtp_port: int | None = None, password: str | None = None
) -> str:
    """A user with an API token (returned) and, optionally, an SMTP provider 'sink' on smtp_port."""
    args = ["account", username, "--token", "live"]
    if smtp_port is not None:
        args += ["--smtp-port", str(smtp_port)]
    if password is not None:
        args += ["--password", password]
    return server.factory(*args)["token"]
