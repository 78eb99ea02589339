"""Waiting for an event, never for an amount of wall time: a deadline only catches a hang.

A loaded machine slows everything down, so a deadline that counts from the start of a wait fails
tests that are merely slow. `wait_until` can instead count from the last sign of progress: as
long as the thing waited for keeps moving (`progress()` returns a new value), it waits on.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


class Exited(AssertionError):
    """The process that was to bring the event about exited first."""


def wait_until(
    check: Callable[[], object],
    *,
    timeout: float,
    what: str,
    every: float = 0.1,
    progress: Callable[[], object] | None = None,
    process: subprocess.Popen | None = None,
):
    """check()'s first truthy value, polled every `every` seconds.

    Fails once `timeout` seconds have passed without it: counted from the start, or, with
    `progress`, from the last time progress() returned something new (so a slow but moving wait
    goes on). With `process`, fails at once if that process exits before the event.
    """
    deadline = time.monotonic() + timeout
    seen = progress() if progress is not None else None
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise Exited(f"the process exited with {process.returncode} before {what}")
        if progress is not None:
            now = progress()
            if now != seen:
                seen, deadline = now, time.monotonic() + timeout
        if time.monotonic() > deadline:
            if progress is None:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            raise AssertionError(
                f"timed out after {timeout} s without progress waiting for {what} "
                f"(progress stuck at {str(seen)[:300]})"
            )
        time.sleep(every)
