"""Queue mode when providers are down, with real Celery workers (beat sweeping every second):
retries with growing backoff until a provider is back, giving up past MAX_DELIVERY_AGE with a
clear reason, and one circuit breaker state shared by every worker through Redis."""

from __future__ import annotations

import http.client
import threading
from datetime import datetime

import pytest

from harness.factories import loopback_smtp
from harness.ports import free_port
from harness.smtp import SmtpServer
from harness.waiting import wait_until
from tests.appserver import create_account
from tests.queue_site import email, post_many, queue_site, received_ids, wait_for_status
from tests.workers import start_worker

RETRY = {"RETRY_BASE_SECONDS": "1", "RETRY_MAX_SECONDS": "8"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with queue_site(tmp_path_factory.mktemp("retries"), BREAKER_THRESHOLD="3") as server:
        yield server


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _delays(detail: dict, schedule: dict[int, str]) -> dict[int, float]:
    """Try number -> seconds from the end of that failed try to the next_attempt_at it set."""
    delays = {}
    for number, due in sorted(schedule.items()):
        last = [a for a in detail["attempts"] if a["try_number"] == number][-1]
        ended = _time(last["started_at"]).timestamp() + last["duration_ms"] / 1000
        delays[number] = _time(due).timestamp() - ended
    return delays


class Schedules:
    """Watches emails through the API, one thread each, and keeps the next_attempt_at each
    failed try set. That value lives only until the next try starts (at least 0.8 s later), so
    each email is polled on its own: on a loaded machine a round over all of them may take
    longer than that."""

    def __init__(self, site, token: str, ids: list[int]) -> None:
        self.site, self.token = site, token
        self.seen: dict[int, dict[int, str]] = {pk: {} for pk in ids}
        self.tries: dict[int, int] = dict.fromkeys(ids, 0)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(pk,)) for pk in ids]

    def _watch(self, pk: int) -> None:
        api = self.site.api(self.token)
        while not self._stop.wait(0.05):
            try:
                detail = api.get(f"/api/v1/emails/{pk}").json()
            except (OSError, http.client.HTTPException):
                continue  # a refused or dropped request: ask again
            self.tries[pk] = detail["tries"]
            if detail["status"] == "queued" and detail["tries"]:
                self.seen[pk].setdefault(detail["tries"], detail["next_attempt_at"])

    def __enter__(self) -> Schedules:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def four_waits(self) -> bool:
        """Each email's tries 1 to 4 have set their waits (or one was missed for good: its
        email is past try 5, and the test says which)."""
        return all({1, 2, 3, 4} <= set(self.seen[pk]) or self.tries[pk] > 5 for pk in self.seen)

    def progress(self) -> int:
        """Tries started so far over all the emails: moves as long as the retries go on."""
        return sum(self.tries.values())


def test_emails_wait_with_growing_backoff_and_go_out_when_a_provider_is_back(site, tmp_path):
    port = free_port()  # nothing listens yet: every attempt is refused
    token = create_account(site, "patient", smtp_port=port)
    worker = start_worker(site, tmp_path, "patient", beat=True, MAX_DELIVERY_AGE="600", **RETRY)
    sink = None
    try:
        ids = [body["id"] for body in post_many(site, token, 3, "Patient")]
        with Schedules(site, token, ids) as schedules:
            # Tries 1 to 4 of each email have set their waits (1, 2, 4, 8 s). However slow the
            # machine, the wait goes on while the tries do.
            wait_until(schedules.four_waits, timeout=60, progress=schedules.progress,
                       what="4 scheduled retries of each email")  # fmt: skip
        sink = SmtpServer(port=port).start()  # the provider comes back
        wait_for_status(site, token, ids, "sent", what="all sent once the provider is back")
    finally:
        worker.stop()
        if sink is not None:
            sink.stop()

    for pk in ids:
        detail = email(site, token, pk)
        delays = _delays(detail, {n: due for n, due in schedules.seen[pk].items() if n <= 4})
        assert set(delays) == {1, 2, 3, 4}, f"every wait was seen: {delays}"
        # 1 s doubling with ±20% jitter: each wait longer than the one before.
        for number, delay in delays.items():
            assert 0.8 * 2 ** (number - 1) - 0.1 <= delay <= 1.2 * 2 ** (number - 1) + 0.1, delays
        waits = [delays[n] for n in sorted(delays)]
        assert waits == sorted(waits) and waits[-1] > 3 * waits[0], delays
        tries = detail["tries"]
        assert tries >= 5 and detail["failure_reason"] == "" and not detail["possible_duplicate"]
        # Every try's attempts are kept: refused each time, then sent on the last (once its
        # circuit is open a try records it skipped, then tries it anyway: it is the only one).
        outcomes = [(a["try_number"], a["outcome"]) for a in detail["attempts"]]
        tried = [item for item in outcomes if item[1] != "skipped"]
        assert tried == [(n, "provider_error") for n in range(1, tries)] + [(tries, "sent")]
    assert sorted(received_ids(sink).values()) == [1, 1, 1]


def test_past_max_delivery_age_an_email_fails_with_a_clear_reason(site, tmp_path):
    token = create_account(site, "hopeless", smtp_port=free_port())
    worker = start_worker(site, tmp_path, "hopeless", beat=True, MAX_DELIVERY_AGE="4", **RETRY)
    try:
        ids = [body["id"] for body in post_many(site, token, 2, "Hopeless")]
        wait_for_status(site, token, ids, "failed", what="both failed")
    finally:
        worker.stop()
    for pk in ids:
        detail = email(site, token, pk)
        reason = detail["failure_reason"]
        assert reason.startswith(f"Gave up after {detail['tries']} tries over "), reason
        assert "smtp 'sink'" in reason and "refused" in reason.lower(), reason
        assert detail["tries"] >= 3 and detail["next_attempt_at"] is None
        numbers = {a["try_number"] for a in detail["attempts"]}
        assert numbers == set(range(1, detail["tries"] + 1))


def test_one_workers_failures_open_the_circuit_for_the_others(site, tmp_path):
    sink = SmtpServer().start()
    token = create_account(site, "shared", smtp_port=free_port())  # "sink" on a dead port
    api = site.api(token)
    backup = api.post(
        "/api/v1/providers",
        {"kind": "smtp", "name": "backup", "settings": loopback_smtp(sink.port)},
    )
    assert backup.status_code == 201, backup
    env = {"BREAKER_RESET_SECONDS": "300", **RETRY}
    try:
        first = start_worker(site, tmp_path, "first", **env)
        try:
            ids = [body["id"] for body in post_many(site, token, 3, "Opens")]
            wait_for_status(site, token, ids, "sent", what="3 sent via the backup")
        finally:
            first.stop()
        providers = api.get("/api/v1/providers").json()
        dead = next(p for p in providers["results"] if p["name"] == "sink")
        assert dead["circuit"]["state"] == "open", dead

        second = start_worker(site, tmp_path, "second", **env)  # it never saw a failure
        try:
            [body] = post_many(site, token, 1, "Skips")
            wait_for_status(site, token, [body["id"]], "sent", what="sent by the second worker")
        finally:
            second.stop()
    finally:
        sink.stop()
    attempts = email(site, token, body["id"])["attempts"]
    assert [(a["provider"]["name"], a["outcome"]) for a in attempts] == [
        ("sink", "skipped"),
        ("backup", "sent"),
    ]
    assert len(sink.received) == 4
