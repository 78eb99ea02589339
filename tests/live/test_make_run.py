"""`make run` end to end: bin/run-local on free ports in a temporary place, as a person runs it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

from harness.procs import children, process_group_alive
from harness.waiting import wait_until
from tests.makerun import processes_of, running_app


def test_make_run_serves_with_a_working_demo_account(tmp_path):
    # A short sweep interval, as a person may set it, so the sweep below acts within the test.
    with running_app(tmp_path, SWEEP_INTERVAL_SECONDS="0.5") as app:
        assert app.login.split()[2] == "demo"

        api = app.api()
        health = api.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok", "cache": "ok"}
        # redis-server is on PATH: make run's own holds the cache, shared by 2 gunicorn workers.
        redis_port, redis_dir = _private_redis(app)
        assert _answers_ping(redis_port) and redis_dir.is_dir()
        assert len(_gunicorn_workers(app)) == 2

        env_file = tmp_path / ".env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert "SECRET_KEY=" in env_file.read_text()

        # The printed token authenticates the demo account, whose provider is the local sink.
        sent = api.post(
            "/api/v1/emails",
            {
                "from": "demo@example.com",
                "to": "friend@example.org",
                "subject": "From make run",
                "text": "It works.",
            },
        )
        assert sent.status_code == 201 and sent.json()["status"] == "sent", sent
        assert sent.json()["sent_via"]["name"] == "Local sink"
        app.wait_for("'From make run'")

        # The README's curl for the original contract, as it stands there: sent_via=3 asks for
        # SendGrid, which the demo account has not: its providers are tried and the answer says so.
        original = _readme_curl(app)
        assert original["status"] == 200 and original["sent_via"] == "google_SMTP", original
        assert "No SendGrid provider is configured" in original["sent_via_note"]
        app.wait_for("'Hello'")

        # make run's outbox sweep takes back a send whose process died (stored `sending` and
        # claimed, its lease run out, nothing recorded) and delivers it.
        sweepers = [pid for pid in processes_of(app.env["ENV_FILE"]) if _is_sweeper(pid)]
        assert len(sweepers) == 1, "make run started one sweep loop"
        email_id = app.factory("email", "demo", "--subject", "Left sending",
                               "--from-email", "demo@example.com", "--to", "friend@example.org",
                               "--lease-expired")["id"]  # fmt: skip
        app.wait_for("'Left sending'")
        app.wait_for("released 1, enqueued 0, delivered 1")
        email = wait_until(
            lambda: (e := api.get(f"/api/v1/emails/{email_id}").json())["status"] == "sent" and e,
            timeout=60, what="the email sent by the sweep",
        )  # fmt: skip
        assert email["possible_duplicate"], "its first try may have reached the provider"
    # Ctrl-C stopped everything it started: nothing of its process group is left.
    assert not process_group_alive(app.process.pid), "make run left processes behind"
    assert not _answers_ping(redis_port) and not redis_dir.exists(), "its redis-server stopped"


def _readme_curl(app) -> dict:
    """Run the README's first `curl` of "The original contract" against the app, with its
    token: the command people copy, not a paraphrase of it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The original contract", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    command = block.split("\ncurl ", 1)[0].replace("\\\n", " ")
    assert command.startswith("curl -X POST http://127.0.0.1:8000/send_email/"), command
    command = command.replace("http://127.0.0.1:8000", app.url)
    done = subprocess.run(
        ["bash", "-c", f"{command} -sS --max-time 60"],
        env={**os.environ, "TOKEN": app.token},
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return json.loads(done.stdout)


def _is_sweeper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")[1:4] == [b"manage.py", b"deliver_pending", b"--loop"]
    except OSError:
        return False


def test_make_run_without_redis_server_says_so_and_serves_from_one_process(tmp_path):
    path = tmp_path / "path-without-redis"  # bin/run-local and its children need nothing else
    path.mkdir()
    with running_app(tmp_path, PATH=str(path)) as app:
        assert "falling back to the in-memory cache" in _cache_line(app)
        health = app.api().get("/healthz")
        assert health.status_code == 200 and health.json()["cache"] == "ok"
        assert len(_gunicorn_workers(app)) == 1
        assert not [line for line in app.seen if line.startswith("Cache: a private")]


def _cache_line(app) -> str:
    return next(line for line in app.seen if "redis-server" in line)


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")
    except OSError:
        return []


def _gunicorn_workers(app) -> list[int]:
    """The gunicorn processes forked by another one: its master's workers."""
    pids = processes_of(app.env["ENV_FILE"])
    gunicorns = [pid for pid in pids if _cmdline(pid)[1:3] == [b"-m", b"gunicorn"]]
    return [pid for master in gunicorns for pid in children(master) if pid in gunicorns]


def _private_redis(app) -> tuple[int, Path]:
    """The port and data directory make run printed for its redis-server."""
    line = _cache_line(app)
    found = re.match(
        r"Cache: a private redis-server at redis://[\d.]+:(\d+)/0 \(data in (\S+);", line
    )
    assert found, line
    return int(found[1]), Path(found[2])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
