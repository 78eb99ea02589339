"""Start the real app (bin/run-local, what `make run` runs) on free ports for end-to-end tests."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT
from harness.api import ApiClient
from harness.app import factory
from harness.ports import free_port
from harness.procs import carrying, process_group_alive
from harness.waiting import wait_until


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


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@dataclass
class LiveApp:
    """A running bin/run-local: its process, environment, ports and the demo API token."""

    process: subprocess.Popen
    env: dict[str, str]
    port: int
    sink_port: int
    lines: queue.Queue = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    login: str = ""
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self) -> ApiClient:
        """The API over HTTP as the demo account."""
        return ApiClient.http(self.url, self.token)

    def factory(self, *args: str):
        """`python -m harness.factories ARGS` against the app's database and settings."""
        return factory(self.env, *args)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """The first line of output (from now on) containing text."""
        return self.wait_for_all(text, timeout=timeout)[text]

    def wait_for_all(self, *texts: str, timeout: float = 120) -> dict[str, str]:
        """The first line (from now on) containing each text, in whatever order they come: the
        children of make run print concurrently."""
        found: dict[str, str] = {}

        def read() -> bool:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                return len(found) == len(texts)
            self.seen.append(line)
            found.update({text: line for text in texts if text in line and text not in found})
            return len(found) == len(texts)

        try:
            wait_until(read, timeout=timeout, every=0, what=f"{list(texts)} in the output")
        except AssertionError as error:
            missing = [text for text in texts if text not in found]
            raise AssertionError(f"{error}: {missing} never printed; output:\n"
                                 + "\n".join(self.seen)) from None  # fmt: skip
        return found


@contextmanager
def running_app(tmp_path: Path, **extra_env: str) -> Iterator[LiveApp]:
    """bin/run-local serving on free ports; stopped with Ctrl-C (SIGINT to its group) after.
    `extra_env`: what a person might put in their environment (e.g. SWEEP_INTERVAL_SECONDS)."""
    port, sink_port = free_port(), free_port()
    env = clean_env(tmp_path, port, sink_port) | extra_env
    process = subprocess.Popen(
        [sys.executable, "bin/run-local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    app = LiveApp(process=process, env=env, port=port, sink_port=sink_port)
    threading.Thread(target=_read_lines, args=(process.stdout, app.lines), daemon=True).start()
    try:
        app.login = app.wait_for("Demo login:")
        app.token = app.wait_for("Demo API token:").split()[-1]
        # gunicorn and, in sync mode (the default), the outbox sweep beside it.
        app.wait_for_all("Listening at:", "Sweeping the outbox every")
        yield app
    finally:
        try:
            _stop(process)
        finally:
            _no_leftovers(env["ENV_FILE"])  # even when it had to be killed: none may stay


def processes_of(env_file: str) -> list[int]:
    """Every process started for this run: they all inherit its ENV_FILE, whatever their group."""
    return carrying("ENV_FILE", env_file)


def _no_leftovers(env_file: str) -> None:
    """Every process make run started has gone (within 30 s); any left is killed, then reported."""
    try:
        wait_until(lambda: not processes_of(env_file), timeout=30, what="make run's processes")
    except AssertionError:
        pass
    left = processes_of(env_file)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"make run left processes behind: {left}"


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        process.wait(timeout=60)
    except ProcessLookupError:
        pass  # it had already exited; the test says why
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # never leave a server behind; the test fails
        process.wait(timeout=10)
        raise
    # Let the group's last members (gunicorn's workers, the sink) exit before callers look for
    # leftovers: a loaded machine may need more than a moment, a leftover never goes.
    deadline = time.monotonic() + 30
    while process_group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
