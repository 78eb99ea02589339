"""Queue mode when providers are down, with real Celery workers (beat sweeping every second):
retries with growing backoff until a provider is back, giving up past MAX_DELIVERY_AGE with a
clear reason, and one circuit breaker state shared by every worker through Redis."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.appserver import create_account
from tests.fakes.smtp import SmtpServer, free_port
from tests.queue_site import email, post_many, received_ids, start_queue_site
from tests.workers import start_worker, wait_until

RETRY = {"RETRY_BASE_SECONDS": "1", "RETRY_MAX_SECONDS": "8"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server, broker = start_queue_site(tmp_path_factory.mktemp("retries"), BREAKER_THRESHOLD="3")
    yield server
    server.stop()
    broker.stop()


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _delays(detail: dict, schedule: dict[int, str]) -> list[float]:
    """Seconds from the end of each failed try to the next_attempt_at it scheduled."""
    delays = []
    for number, due in sorted(schedule.items()):
        last = [a for a in detail["attempts"] if a["try_number"] == number][-1]
        ended = _time(last["started_at"]).timestamp() + last["duration_ms"] / 1000
        delays.append(_time(due).timestamp() - ended)
    return delays


def test_emails_wait_with_growing_backoff_and_go_out_when_a_provider_is_back(site, tmp_path):
    port = free_port()  # nothing listens yet: every attempt is refused
    token = create_account(site, "patient", smtp_port=port)
    worker = start_worker(site, tmp_path, "patient", beat=True, MAX_DELIVERY_AGE="300", **RETRY)
    sink = None
    try:
        ids = [body["id"] for body in post_many(site, token, 3, "Patient")]
        schedules: dict[int, dict[int, str]] = {pk: {} for pk in ids}

        def watch() -> bool:
            for pk in ids:
                detail = email(site, token, pk)
                if detail["status"] == "queued" and detail["tries"]:
                    schedules[pk][detail["tries"]] = detail["next_attempt_at"]
            return all(len(schedule) >= 4 for schedule in schedules.values())

        wait_until(watch, timeout=60, what="4 scheduled retries of each email", every=0.1)
        sink = SmtpServer(port=port).start()  # the provider comes back
        wait_until(
            lambda: all(email(site, token, pk)["status"] == "sent" for pk in ids),
            timeout=40,
            what="all sent once the provider is back",
        )
    finally:
        worker.stop()
        if sink is not None:
            sink.stop()

    for pk in ids:
        detail = email(site, token, pk)
        delays = _delays(detail, {n: due for n, due in schedules[pk].items() if n <= 4})
        # 1 s doubling with ±20% jitter: each wait longer than the one before.
        for number, delay in enumerate(delays, start=1):
            assert 0.8 * 2 ** (number - 1) - 0.1 <= delay <= 1.2 * 2 ** (number - 1) + 0.1, delays
        assert delays == sorted(delays) and delays[-1] > 3 * delays[0], delays
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
        wait_until(
            lambda: all(email(site, token, pk)["status"] == "failed" for pk in ids),
            timeout=40,
            what="both failed",
        )
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
    code, backup = site.request(
        "POST", "/api/v1/providers", token=token,
        body={"kind": "smtp", "name": "backup",
              "settings": {"host": "127.0.0.1", "port": sink.port, "security": "none"}},
    )  # fmt: skip
    assert code == 201, backup
    env = {"BREAKER_RESET_SECONDS": "300", **RETRY}
    try:
        first = start_worker(site, tmp_path, "first", **env)
        try:
            ids = [body["id"] for body in post_many(site, token, 3, "Opens")]
            wait_until(lambda: all(email(site, token, pk)["status"] == "sent" for pk in ids),
                       timeout=30, what="3 sent via the backup")  # fmt: skip
        finally:
            first.stop()
        code, providers = site.request("GET", "/api/v1/providers", token=token)
        dead = next(p for p in providers["results"] if p["name"] == "sink")
        assert dead["circuit"]["state"] == "open", dead

        second = start_worker(site, tmp_path, "second", **env)  # it never saw a failure
        try:
            [body] = post_many(site, token, 1, "Skips")
            wait_until(lambda: email(site, token, body["id"])["status"] == "sent",
                       timeout=30, what="sent by the second worker")  # fmt: skip
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
