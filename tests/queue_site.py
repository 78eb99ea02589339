"""Shared by the queue mode tests: the app under gunicorn in queue mode with its own broker, and
small helpers over its API (every check goes through the API, as a client would see it)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.appserver import AppServer, create_account, start_app_server
from tests.fakes.smtp import SmtpServer
from tests.workers import RedisServer

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
    broker = RedisServer(tmp).start()
    try:
        server = start_app_server(tmp, workers=2, **QUEUE_ENV, CELERY_BROKER_URL=broker.url, **env)
    except BaseException:
        broker.stop()
        raise
    return server, broker


def account_with_sink(server: AppServer, username: str, sink: SmtpServer) -> str:
    return create_account(server, username, smtp_port=sink.port)


def email_body(subject: str) -> dict:
    return {"from": "shop@example.com", "to": "ann@example.org", "subject": subject,
            "text": "Thanks."}  # fmt: skip


def post_many(server: AppServer, token: str, count: int, subject: str) -> list[dict]:
    """POST `count` emails from 8 threads; each must be accepted (202). Returns the bodies."""

    def post(index: int) -> tuple[int, dict]:
        return server.request(
            "POST", "/api/v1/emails", email_body(f"{subject} {index}"), token=token
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(count)))
    refused = [answer for answer in answers if answer[0] != 202]
    assert not refused, refused[:3]
    return [body for _, body in answers]


def count(server: AppServer, token: str, status: str | None = None) -> int:
    query = f"&status={status}" if status else ""
    code, body = server.request("GET", f"/api/v1/emails?page_size=1{query}", token=token)
    assert code == 200, body
    return body["count"]


def settled(server: AppServer, token: str) -> int:
    """How many of the account's emails reached a final status."""
    return count(server, token, "sent") + count(server, token, "failed")


def all_emails(server: AppServer, token: str) -> list[dict]:
    emails, page = [], 1
    while True:
        code, body = server.request("GET", f"/api/v1/emails?page_size=100&page={page}", token=token)
        assert code == 200, body
        emails += body["results"]
        if body["next"] is None:
            return emails
        page += 1


def email(server: AppServer, token: str, email_id: int) -> dict:
    code, body = server.request("GET", f"/api/v1/emails/{email_id}", token=token)
    assert code == 200, body
    return body


def received_ids(sink: SmtpServer) -> Counter:
    """How many times the sink received each Message-ID."""
    return Counter(received.message["Message-ID"] for received in list(sink.received))
