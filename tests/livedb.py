"""A fresh database for the app processes a test module starts: on the PostgreSQL server of
DATABASE_URL when the run has one (created with psycopg, dropped after), else a SQLite file."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass
class LiveDatabase:
    env: dict[str, str]  # DATABASE_URL or SQLITE_PATH, for the processes' environment
    name: str
    server_url: str = ""  # the maintenance database's URL on PostgreSQL, else ""

    def drop(self) -> None:
        if not self.server_url:
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            # FORCE: a process left connected (a killed worker's child) must not keep it alive.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def fresh_database(tmp: Path) -> LiveDatabase:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        path = tmp / "live.sqlite3"
        return LiveDatabase(env={"SQLITE_PATH": str(path)}, name=str(path))
    if not url.startswith(("postgres://", "postgresql://")):
        raise AssertionError(f"live tests know SQLite and PostgreSQL, not {url.split(':')[0]}")
    import psycopg
    from psycopg import sql

    name = f"es_live_{uuid.uuid4().hex[:12]}"
    server_url = _with_database(url, "postgres")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return LiveDatabase(
        env={"DATABASE_URL": _with_database(url, name)}, name=name, server_url=server_url
    )
