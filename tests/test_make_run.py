"""`make run` end to end: bin/run-local on free ports in a temporary place, as a person runs it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.fakes.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path, port: int, sink_port: int) -> dict[str, str]:
    """Only what a person's shell has: none of the test settings' variables leak in."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "ENV_FILE": str(tmp_path / ".env"),
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "PORT": str(port),
        "SINK_PORT": str(sink_port),
    }


def read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def wait_for(lines: queue.Queue, seen: list[str], prefix: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if prefix in line:
            return line
    raise AssertionError(f"{prefix!r} never printed; output so far:\n" + "\n".join(seen))


def manage(env: dict[str, str], code: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def test_make_run_serves_with_a_working_demo_account(tmp_path):
    port, sink_port = free_port(), free_port()
    env = clean_env(tmp_path, port, sink_port)
    process = subprocess.Popen(
        [sys.executable, "bin/run-local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        login = wait_for(lines, seen, "Demo login:")
        token = wait_for(lines, seen, "Demo API token:").split()[-1]
        wait_for(lines, seen, "Listening at:")
        assert login.split()[2] == "demo"

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok", "database": "ok", "cache": "ok"}

        env_file = tmp_path / ".env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert "SECRET_KEY=" in env_file.read_text()

        # The printed token authenticates the demo account, whose provider is the local sink.
        out = manage(
            env,
            (
                "from mailer.services import token_authenticate, email_send\n"
                "from mailer.validation import OutgoingEmail\n"
                f"token = token_authenticate(raw={token!r})\n"
                "result = email_send(account=token.account, outgoing=OutgoingEmail("
                "from_email='demo@example.com', to=['friend@example.org'], subject='From make run',"
                " text='It works.'))\n"
                "print(token.account.username, result.email.status)\n"
            ),
        )
        assert out.strip().splitlines()[-1].split() == ["demo", "sent"]
        wait_for(lines, seen, "'From make run'")
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        process.wait(timeout=30)
    # Ctrl-C stopped everything it started: nothing of its process group is left.
    time.sleep(0.5)
    try:
        os.killpg(process.pid, 0)
        leftover = True
    except ProcessLookupError:
        leftover = False
    assert not leftover, "make run left processes behind"
