"""Shared by the queue mode tests: the app under gunicorn in queue mode with its own broker, and
small helpers over its API (every check goes through the API, as a client would see it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from harness.redis import RedisServer
from harness.smtp import SmtpServer
from harness.waiting import wait_until
from tests.appserver import AppServer, create_account, start_app_server

# Small leases and intervals so that recovery happens within a test's patience.
QUEUE_ENV = {
    "DELIVERY_MODE": "queue",
    "DELIVERY_TIME_LIMIT": "5",
    "SENDING_LEASE_SECONDS": "6",
    "REQUEUE_AFTER_SECONDS": "8",
    "SWEEP_INTERVAL_SECONDS": "1",
}


def start_queue_site(tmp: Path, **env: str) -> tuple[AppServer, RedisServer]:
    """gunicorn in queue mode whose broker is a redis-server of its own (the cache stays on the
    run's Redis, so stopping the broker leaves the cache up)."""
    broker = RedisServer(tmp / "broker").start()
    try:
        server = start_app_server(tmp, workers=2, **QUEUE_ENV, CELERY_BROKER_URL=broker.url, **env)
    except BaseException:
        broker.stop()
        raise
    return server, broker


@contextmanager
def queue_site(tmp: Path, **env: str) -> Iterator[AppServer]:
    """start_queue_site for a fixture: the server, its broker as `.broker`, both stopped after."""
    server, broker = start_queue_site(tmp, **env)
    server.broker = broker
    try:
        yield server
    finally:
        server.stop()
        broker.stop()


def account_with_sink(server: AppServer, username: str, sink: SmtpServer) -> str:
    return create_account(server, username, smtp_port=sink.port)


def email_body(subject: str) -> dict:
    return {"from": "shop@example.com", "to": "ann@example.org", "subject": subject,
            "text": "Thanks."}  # fmt: skip


def post_many(server: AppServer, token: str, count: int, subject: str) -> list[dict]:
    """POST `count` emails from 8 threads; each must be accepted (202). Returns the bodies."""
    api = server.api(token)

    def post(index: int):
        return api.post("/api/v1/emails", email_body(f"{subject} {index}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(count)))
    refused = [answer for answer in answers if answer.status_code != 202]
    assert not refused, refused[:3]
    return [answer.json() for answer in answers]


def count(server: AppServer, token: str, status: str | None = None) -> int:
    query = {"page_size": 1} | ({"status": status} if status else {})
    response = server.api(token).get("/api/v1/emails", query)
    assert response.status_code == 200, response
    return response.json()["count"]


def settled(server: AppServer, token: str) -> int:
    """How many of the account's emails reached a final status."""
    return count(server, token, "sent") + count(server, token, "failed")


def all_emails(server: AppServer, token: str) -> list[dict]:
    emails, page, api = [], 1, server.api(token)
    while True:
        response = api.get("/api/v1/emails", {"page_size": 100, "page": page})
        assert response.status_code == 200, response
        body = response.json()
        emails += body["results"]
        if body["next"] is None:
            return emails
        page += 1


def email(server: AppServer, token: str, email_id: int) -> dict:
    response = server.api(token).get(f"/api/v1/emails/{email_id}")
    assert response.status_code == 200, response
    return response.json()


def progress(server: AppServer, token: str, ids: list[int]) -> list[tuple[str, int]]:
    """Each email's status and tries: changes as long as delivery goes on (a wait that sees it
    change is slow, not stuck)."""
    return [(e["status"], e["tries"]) for e in (email(server, token, pk) for pk in ids)]


def wait_for_status(
    server: AppServer, token: str, ids: list[int], status: str, *, what: str, timeout: float = 60
) -> None:
    """Until every one of the emails has `status`. The deadline counts from the last change of
    any of them: retries that go on slowly on a loaded machine are waited for."""
    wait_until(
        lambda: all(email(server, token, pk)["status"] == status for pk in ids),
        timeout=timeout,
        progress=lambda: progress(server, token, ids),
        what=what,
    )


def received_ids(sink: SmtpServer) -> Counter:
    """How many times the sink received each Message-ID."""
    return Counter(received.message["Message-ID"] for received in list(sink.received))
