"""Processes: each started in a session (process group) of its own, stopped as a whole group,
and found through /proc (children, who carries an environment variable)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from harness import ROOT


def start(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path = ROOT,
    **popen,
) -> subprocess.Popen:
    """Start command in a new session: a terminal's Ctrl-C does not reach it, and stop_group()
    ends it with everything it started. Its environment is `env` (default: ours, as it is now);
    its output goes to `log` (appended) unless told otherwise (default: ours)."""
    if log is not None:
        out = open(log, "ab")  # the child gets its own copy; ours is closed below
        popen.setdefault("stdout", out)
        popen.setdefault("stderr", subprocess.STDOUT)
    try:
        return subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, **popen)
    finally:
        if log is not None:
            out.close()


def process_group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (a zombie, dead but not yet reaped by
    whoever inherited it, does not count: it holds nothing and can't be killed)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(
        (fields := _stat_fields(pid)) and int(fields[2]) == pgid and fields[0] != "Z"
        for pid in _pids()
    )


def stop_group(
    process: subprocess.Popen, *, sig: int | None = signal.SIGTERM, grace: float = 20
) -> None:
    """Signal the whole process group (with sig=None, nobody: the caller already signalled what
    it had to); SIGKILL what is left of the group after `grace` seconds. Returns once the leader
    is reaped and no member of the group is left."""
    deadline = time.monotonic() + grace
    if sig is not None and (process.poll() is None or process_group_alive(process.pid)):
        try:
            os.killpg(process.pid, signal.SIGCONT)  # a stopped group can't act on sig
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    while process_group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_group_alive(process.pid):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.wait(timeout=10)


class Processes:
    """A set of started processes that stop_all() ends, newest first (the bench's, bin's)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def add(self, process: subprocess.Popen) -> subprocess.Popen:
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen, *, grace: float = 15) -> None:
        try:
            stop_group(process, grace=grace)
        finally:
            if process in self.started:
                self.started.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.started)):
            self.stop(process)


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name (which is in parentheses and may hold spaces):
    [state, ppid, ...]; empty if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def children(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers, a Celery worker's pool processes)."""
    return sorted(p for p in _pids() if (fields := _stat_fields(p)) and int(fields[1]) == pid)


def carrying(name: str, value: str) -> list[int]:
    """Every process whose environment has name=value: all a run started inherit it, whatever
    their process group."""
    marker = f"{name}={value}".encode()
    found = []
    for pid in _pids():
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB; empty if it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except OSError:
        return {}
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
