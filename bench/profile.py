"""py-spy profiles of running processes, summarised as the functions that hold the most samples.

py-spy needs ptrace (it works here as root); with it missing, figures are still reported and
the profile is marked unavailable.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def start(pid: int, out: Path, *, seconds: float | None, subprocesses: bool = True):
    """Start recording `pid` (and its children) in the background; returns the py-spy process.
    Without `seconds` it records until stop()."""
    tool = py_spy()
    if tool is None:
        return None
    command = [tool, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
               "--nonblocking", "--output", str(out)]  # fmt: skip
    if seconds is not None:
        command += ["--duration", str(max(1, round(seconds)))]
    if subprocesses:
        command.append("--subprocesses")
    # Idle frames too: a request's time includes waiting on SQLite's lock, Redis and the sink.
    command.append("--idle")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(recorder) -> None:
    """End a recording started without a duration; py-spy writes its output on SIGINT."""
    if recorder is None:
        return
    recorder.send_signal(signal.SIGINT)
    try:
        recorder.wait(timeout=30)
    except subprocess.TimeoutExpired:
        recorder.kill()


def _label(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.13/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def _package(label: str) -> str:
    """Where a leaf frame's time goes, coarsely: django/db, redis, email, mailer, sqlite3..."""
    path = label.rsplit("(", 1)[-1].rstrip(")")
    parts = path.split("/")
    if parts[0] in ("django", "ninja", "pydantic", "gunicorn", "redis", "django_redis", "mailer"):
        return "/".join(parts[:2]) if parts[0] in ("django", "mailer") else parts[0]
    return parts[0].removesuffix(".py")


# Frames every request passes through (server loop, handler, middleware): left out of the
# inclusive list, where they would only say "100%".
PLUMBING = ("gunicorn/", "<frozen runpy>", "threading.py", "django/core/handlers/",
            "django/utils/deprecation.py", "whitenoise/", "mailer/middleware.py",
            "ninja/operation.py", "celery/", "billiard/", "kombu/", "click/",
            "__init__ (__init__)")  # fmt: skip


# Frames that mark "working on a request or task"; samples outside them are a worker waiting
# for work, which says nothing about where a request's time goes.
FOCUS = ("handle_request (gunicorn/", "trace_task (celery/", "handle_DATA (", "_handle_client (")


def summarize(path: Path, *, top: int = 80) -> dict:
    """Inclusive share of samples per function (counted once a stack; request plumbing left
    out), self share, and self share by package; over the samples spent on a request or task
    when the profile has any."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"samples": 0, "busy_share": 0.0, "inclusive": [], "self": [], "packages": []}
    lines = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            raw = stack.split(";")
            lines.append((sum(f.startswith("process ") for f in raw), raw, int(count)))
    # With --subprocesses each stack starts with its process chain: keep the deepest (gunicorn's
    # or Celery's workers), not the parent that only waits for signals.
    depth = max((d for d, _, _ in lines), default=0)
    lines = [(d, raw, n) for d, raw, n in lines if d == depth]
    busy = [x for x in lines if any(m in f for f in x[1] for m in FOCUS)]
    all_samples = sum(n for _, _, n in lines)
    lines = busy or lines
    for _, raw, samples in lines:
        frames = [_label(f) for f in raw if "(" in f and not f.startswith("process ")]
        if not frames:
            continue
        total += samples
        for label in set(frames):
            if not any(p in label for p in PLUMBING):
                inclusive[label] += samples
        own[frames[-1]] += samples
        packages[_package(frames[-1])] += samples

    def share(counter: Counter[str]) -> list[list]:
        return [[label, round(100 * n / total, 1)] for label, n in counter.most_common(top)]

    return {
        "samples": total,
        "busy_share": round(100 * total / all_samples, 1) if all_samples else 0.0,
        "inclusive": share(inclusive),
        "self": share(own),
        "packages": share(packages),
    }
