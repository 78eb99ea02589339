"""Sync mode's lease and sweep: a send whose web worker died mid-send is taken back once its
short lease ran out, ended from its recorded attempts (or retried inline, flagged
possible_duplicate), and its Idempotency-Key then answers with the final email instead of 409.

In process against real SMTP servers for the lease and sweep logic; then the real stack:
gunicorn with production settings, a worker SIGKILLed while its send is in flight, and the sweep
run as `manage.py deliver_pending --loop` and as the one-off command cron runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import astuple
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from harness import ROOT, procs
from harness.factories import loopback_smtp
from harness.procs import children, stop_group
from harness.smtp import ScriptedHandler, SmtpServer
from harness.waiting import wait_until
from mailer.models import DeliveryAttempt, Email, EmailStatus
from mailer.services import (
    email_claim,
    email_create,
    email_send,
    emails_sweep,
)
from mailer.services.emails import IdempotencyInFlight
from tests.appserver import AppServer, create_account, start_app_server
from tests.conftest import outgoing

# Lease and sweep logic, in process -------------------------------------------------------------


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


@pytest.fixture
def sync_mode(settings):
    settings.DELIVERY_MODE = "sync"
    settings.SYNC_SENDING_LEASE_SECONDS = 60
    settings.SENDING_LEASE_SECONDS = 600
    settings.RETRY_BASE_SECONDS = 60
    settings.RETRY_MAX_SECONDS = 3600
    settings.MAX_DELIVERY_AGE = 24 * 3600
    return settings


def _died_mid_send(account, *, attempt: str | None = None, **create) -> Email:
    """What a web request leaves when its worker is killed during the send: the email stored
    `sending` and claimed for try 1 by email_create, and `attempt` recorded (if any)."""
    email, created = email_create(account=account, outgoing=outgoing(), **create)
    assert created
    if attempt is not None:
        config = account.provider_configs.first()
        DeliveryAttempt.objects.create(
            email=email, provider=config, provider_kind="smtp", provider_name=config.name,
            outcome=attempt, provider_message_id="<accepted@sink>", started_at=timezone.now(),
            error_message="550 5.1.1 no such user" if attempt == "rejected" else "timed out",
            try_number=1,
        )  # fmt: skip
    return email


def _lease_runs_out(email: Email) -> None:
    Email.objects.filter(pk=email.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_a_sync_send_is_claimed_with_the_short_lease_and_a_worker_try_with_the_long_one(
    account, sync_mode
):
    email, _ = email_create(account=account, outgoing=outgoing())
    assert email.status == EmailStatus.SENDING and email.tries == 1
    assert email.lease_expires_at - email.claimed_at == timedelta(seconds=60)

    queued, _ = email_create(account=account, outgoing=outgoing(), queued=True)
    assert queued.lease_expires_at is None
    claimed = email_claim(email_id=queued.pk)
    assert claimed.lease_expires_at - claimed.claimed_at == timedelta(seconds=600)


@pytest.mark.django_db
def test_the_sweep_leaves_a_sync_send_alone_while_its_lease_runs(
    account, sink_provider, smtp_sink, sync_mode
):
    email = _died_mid_send(account)
    # Claimed a while ago, but within its lease: its request may still be sending it.
    Email.objects.filter(pk=email.pk).update(claimed_at=timezone.now() - timedelta(seconds=59))
    assert astuple(emails_sweep(inline=True)) == (0, 0, 0, 0, 0)
    assert Email.objects.get(pk=email.pk).status == EmailStatus.SENDING
    assert smtp_sink.received == []


@pytest.mark.django_db
def test_a_dead_send_whose_provider_had_accepted_ends_sent_without_sending_again(
    account, sink_provider, smtp_sink, sync_mode
):
    email = _died_mid_send(account, attempt="sent")
    _lease_runs_out(email)
    report = emails_sweep(inline=True)
    assert (report.released, report.delivered) == (1, 0)
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT and email.sent_via == sink_provider
    assert email.provider_message_id == "<accepted@sink>" and not email.possible_duplicate
    assert email.tries == 1 and smtp_sink.received == []


@pytest.mark.django_db
def test_a_dead_send_that_was_rejected_ends_failed_with_the_reason(
    account, sink_provider, smtp_sink, sync_mode
):
    email = _died_mid_send(account, attempt="rejected")
    _lease_runs_out(email)
    assert emails_sweep(inline=True).released == 1
    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED
    assert email.failure_reason == "smtp 'sink' rejected the message: 550 5.1.1 no such user"
    assert smtp_sink.received == []


@pytest.mark.django_db
def test_a_dead_send_with_nothing_recorded_is_retried_inline_and_flagged(
    account, sink_provider, smtp_sink, sync_mode
):
    email = _died_mid_send(account, attempt="ambiguous")
    _lease_runs_out(email)
    report = emails_sweep(inline=True)
    assert (report.released, report.enqueued, report.delivered, report.waiting) == (1, 0, 1, 0)
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT and email.tries == 2
    assert email.possible_duplicate, "the attempt in flight may have reached the provider"
    assert email.failure_reason == ""
    tries = list(email.attempts.order_by("id").values_list("try_number", "outcome"))
    assert tries == [(1, "ambiguous"), (2, "sent")]
    assert [r.message["Message-ID"] for r in smtp_sink.received] == [email.message_id]


@pytest.mark.django_db
def test_a_retry_that_fails_again_waits_with_queue_mode_backoff(
    account, add_provider, closed_port, sync_mode
):
    add_provider("smtp", name="down", settings=loopback_smtp(closed_port))
    email = _died_mid_send(account)
    _lease_runs_out(email)
    before = timezone.now()
    assert emails_sweep(inline=True).delivered == 1
    email.refresh_from_db()
    assert email.status == EmailStatus.QUEUED and email.tries == 2 and email.possible_duplicate
    assert before + timedelta(seconds=2 * 60 * 0.8) <= email.next_attempt_at
    assert email.next_attempt_at <= timezone.now() + timedelta(seconds=2 * 60 * 1.2)
    assert email.failure_reason.startswith("Try 2 failed: No provider accepted the message")
    # Not due yet: the next sweeps leave it.
    assert astuple(emails_sweep(inline=True)) == (0, 0, 0, 0, 0)
    assert Email.objects.get(pk=email.pk).tries == 2


@pytest.mark.django_db
def test_a_claim_without_a_lease_end_is_taken_back_after_the_longest_lease(
    account, sink_provider, sync_mode
):
    # Claimed by a host still running the release before lease ends were stored.
    email = _died_mid_send(account, attempt="sent")
    Email.objects.filter(pk=email.pk).update(
        lease_expires_at=None, claimed_at=timezone.now() - timedelta(seconds=599)
    )
    assert emails_sweep(inline=True).released == 0
    Email.objects.filter(pk=email.pk).update(claimed_at=timezone.now() - timedelta(seconds=601))
    assert emails_sweep(inline=True).released == 1
    assert Email.objects.get(pk=email.pk).status == EmailStatus.SENT


@pytest.mark.django_db
def test_the_idempotency_key_answers_409_until_the_sweep_ends_the_send_then_the_email(
    account, sink_provider, smtp_sink, sync_mode
):
    key = {"idempotency_key": "order-42", "fingerprint": "f" * 64}
    email = _died_mid_send(account, **key)
    with pytest.raises(IdempotencyInFlight):
        email_send(account=account, outgoing=outgoing(), **key)
    _lease_runs_out(email)
    emails_sweep(inline=True)
    replay = email_send(account=account, outgoing=outgoing(), **key)
    assert replay.replayed and replay.email.pk == email.pk
    assert replay.email.status == EmailStatus.SENT and replay.email.possible_duplicate
    assert len(smtp_sink.received) == 1, "the replay sent nothing"


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_emails_left_sending_a_lease_that_the_sweep_honours(settings):
    settings.SENDING_LEASE_SECONDS = 600
    executor = MigrationExecutor(connection)
    before, after = [("mailer", "0003_email_queue")], [("mailer", "0004_email_lease_expires_at")]
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        user = old.get_model("auth", "User").objects.create(username="old")
        Email = old.get_model("mailer", "Email")
        now = timezone.now()
        long_ago = now - timedelta(days=3)
        legacy = Email.objects.create(account=user, status="sending")  # before claims: tries 0
        Email.objects.filter(pk=legacy.pk).update(created_at=long_ago)
        live = Email.objects.create(
            account=user, status="sending", tries=1, claimed_at=now - timedelta(seconds=30)
        )
        done = Email.objects.create(account=user, status="sent", tries=1, claimed_at=long_ago)

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        Email = executor.loader.project_state(after).apps.get_model("mailer", "Email")
        legacy, live, done = (Email.objects.get(pk=e.pk) for e in (legacy, live, done))
        assert (legacy.claimed_at, legacy.tries) == (long_ago, 1)
        assert legacy.lease_expires_at == long_ago + timedelta(seconds=600)
        assert live.lease_expires_at == live.claimed_at + timedelta(seconds=600)
        assert done.lease_expires_at is None
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    # The email stuck for days is taken back at the first sweep (too old to try again, it fails
    # saying it may have been sent); the live one is left to its process.
    assert emails_sweep(inline=True).released == 1
    legacy = Email.objects.get(pk=legacy.pk)
    assert legacy.status == "failed" and legacy.possible_duplicate
    assert legacy.failure_reason.startswith("Gave up after 1 try over 3 d 0 h: its worker")
    assert Email.objects.get(pk=live.pk).status == "sending"


def test_a_sync_lease_within_the_web_timeout_is_refused():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "emailservice.settings",
           "WEB_TIMEOUT": "30", "SYNC_SENDING_LEASE_SECONDS": "30"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", "import emailservice.settings"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert ImproperlyConfigured.__name__ in result.stderr
    assert "SYNC_SENDING_LEASE_SECONDS must be longer than WEB_TIMEOUT" in result.stderr


# The real stack: gunicorn, a worker killed mid-send, the sweep as its own process ----------------

# A send may last PROVIDER_TIMEOUT: long enough for the test to kill its worker mid-send even on
# a loaded machine. The sync lease is as short as the settings allow, so the test waits little.
LIVE_ENV = {
    "DELIVERY_MODE": "sync",
    "PROVIDER_TIMEOUT": "10",
    "ATTEMPT_DEADLINE_SECONDS": "10",
    "SEND_BUDGET_SECONDS": "10",
    "WEB_TIMEOUT": "15",
    "SYNC_SENDING_LEASE_SECONDS": "16",
    "RETRY_BASE_SECONDS": "60",
}


class StallingHandler(ScriptedHandler):
    """Takes each message and holds its answer while `stalling` is set: a send in flight for as
    long as the test needs. `in_flight` is set once a message is being held; `abandoned` once
    its client vanished without an answer (aiosmtpd cancels the handler on connection loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stalling = threading.Event()
        self.stalling.set()
        self.in_flight = threading.Event()
        self.abandoned = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.stalling.is_set():
            self.in_flight.set()
            try:
                for _ in range(6000):  # at most 2 min
                    if not self.stalling.is_set():
                        break
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                self.abandoned.set()
                raise
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server = start_app_server(tmp_path_factory.mktemp("syncsweep"), workers=2, **LIVE_ENV)
    yield server
    server.stop()


@pytest.fixture
def stalling_smtp():
    server = SmtpServer(StallingHandler()).start()
    yield server
    server.handler.stalling.clear()
    server.stop()


def _sockets_to(port: int) -> set[str]:
    """Inodes of the established TCP connections to 127.0.0.1:port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def _worker_sending_to(master: int, port: int) -> int:
    """The gunicorn worker (a child of the master) with a connection open to the SMTP port."""
    inodes = _sockets_to(port)
    holders = []
    for pid in children(master):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        links = set()
        for fd in fds:
            try:
                links.add(os.readlink(fd))
            except OSError:
                continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            holders.append(pid)
    assert len(holders) == 1, f"one worker sends: {holders} of {children(master)}"
    return holders[0]


class Post(threading.Thread):
    """A POST in the background: the test kills the worker serving it."""

    def __init__(self, server: AppServer, token: str, body: dict, headers: dict) -> None:
        super().__init__(daemon=True)
        self.args_ = (server, token, body, headers)
        self.answer: tuple[int, dict] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        server, token, body, headers = self.args_
        try:
            response = server.api(token).post("/api/v1/emails", body, headers=headers)
            self.answer = response.status_code, response.json()
        except BaseException as error:  # the connection dies with the worker
            self.error = error


def _email(server: AppServer, token: str, email_id: int) -> dict:
    response = server.api(token).get(f"/api/v1/emails/{email_id}")
    assert response.status_code == 200, response
    return response.json()


def _ended(server: AppServer, token: str, email_id: int) -> dict | None:
    email = _email(server, token, email_id)
    return email if email["status"] in ("sent", "failed") else None


def _only_email(server: AppServer, token: str) -> dict | None:
    response = server.api(token).get("/api/v1/emails")
    assert response.status_code == 200, response
    results = response.json()["results"]
    return results[0] if results else None


def _kill_mid_send(server: AppServer, token: str, smtp: SmtpServer, body: dict, key: str) -> dict:
    """POST with an Idempotency-Key, SIGKILL the gunicorn worker while its send is held by the
    SMTP server, and return the email it left behind (still `sending`: nobody can end it)."""
    handler: StallingHandler = smtp.handler
    post = Post(server, token, body, {"Idempotency-Key": key})
    post.start()
    assert handler.in_flight.wait(60), "the send reached the SMTP server"
    email = _only_email(server, token)
    assert email is not None and email["status"] == "sending" and email["tries"] == 1, email
    os.kill(_worker_sending_to(server.process.pid, smtp.port), signal.SIGKILL)
    post.join(60)
    assert post.answer is None and post.error is not None, "the request died with its worker"
    assert handler.abandoned.wait(30), "the SMTP server saw the send vanish unanswered"
    handler.stalling.clear()  # the provider answers from now on
    # Left `sending`; a repeat of the request is told it is still in flight.
    repeat = server.api(token).post("/api/v1/emails", body, headers={"Idempotency-Key": key})
    assert repeat.status_code == 409 and repeat.json()["email_id"] == email["id"], repeat
    assert _email(server, token, email["id"])["status"] == "sending"
    return email


def _replay_answers_the_final_email(server, token, body, key, email_id) -> dict:
    replay = server.api(token).post("/api/v1/emails", body, headers={"Idempotency-Key": key})
    assert replay.status_code == 201 and replay.json()["id"] == email_id, replay
    return replay.json()


def _start_sweep_loop(server: AppServer, tmp: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp / "sweep.log"
    process = procs.start(
        [sys.executable, "manage.py", "deliver_pending", "--loop", "--interval", "0.2"],
        env={**server.env, "PYTHONUNBUFFERED": "1"},
        log=log,
    )
    wait_until(lambda: "Sweeping the outbox" in log.read_text(), timeout=120, process=process,
               what="the sweep loop to start")  # fmt: skip
    return process, log


def test_a_worker_killed_mid_send_is_ended_by_the_sweep_loop(site, stalling_smtp, tmp_path):
    token = create_account(site, "killed", smtp_port=stalling_smtp.port)
    body = {"from": "shop@example.com", "to": "ann@example.org", "subject": "Order 1",
            "text": "Thanks."}  # fmt: skip
    sweep, log = _start_sweep_loop(site, tmp_path)
    try:
        email = _kill_mid_send(site, token, stalling_smtp, body, "order-1")
        # Once the lease runs out, the loop takes it back and, as nothing was recorded, tries
        # again here: the provider accepts.
        final = wait_until(
            lambda: _ended(site, token, email["id"]), timeout=120, process=sweep,
            what="the sweep to end it",
        )  # fmt: skip
    finally:
        sweep.send_signal(signal.SIGTERM)
        try:
            sweep.wait(timeout=30)
        finally:
            stop_group(sweep, grace=5)
    assert sweep.returncode == 0, log.read_text()
    output = log.read_text()
    assert "released 1, enqueued 0, delivered 1, still waiting 0" in output, output
    assert "Outbox sweep stopped" in output

    assert final["status"] == "sent" and final["tries"] == 2, final
    assert final["possible_duplicate"], "the killed send may have reached the provider"
    assert [(a["try_number"], a["outcome"]) for a in final["attempts"]] == [(2, "sent")]
    assert [r.message["Message-ID"] for r in stalling_smtp.received] == [final["message_id"]]

    replay = _replay_answers_the_final_email(site, token, body, "order-1", email["id"])
    assert replay["status"] == "sent" and replay["possible_duplicate"]
    assert len(stalling_smtp.received) == 1, "the replay sent nothing"


def test_a_worker_killed_mid_send_is_ended_by_deliver_pending_from_cron(
    site, stalling_smtp, smtp_sink
):
    # The stalling provider first; after the kill it refuses (421), so the sweep's retry fails
    # over to the second provider.
    token = create_account(site, "cron", smtp_port=stalling_smtp.port)
    site.factory("provider", "cron", "smtp", "--name", "backup", "--smtp-port", str(smtp_sink.port))
    body = {"from": "shop@example.com", "to": "ann@example.org", "subject": "Order 2",
            "text": "Thanks."}  # fmt: skip
    stalling_smtp.handler.data_reply = "421 4.3.2 Service shutting down"
    email = _kill_mid_send(site, token, stalling_smtp, body, "order-2")
    [row] = site.factory(
        "rows", "mailer.Email", f"pk={email['id']}", "--fields", "lease_expires_at"
    )
    lease_end = datetime.fromisoformat(row["lease_expires_at"]).timestamp()
    # Run at once, the command finds the lease still running and leaves the send alone; on a
    # loaded machine it may start only after the lease ran out, and then it is the run that
    # takes it back. Judged by what it did and when it finished, not by a margin load can eat.
    out = site.manage("deliver_pending")
    if "released 0" in out:
        wait_until(lambda: time.time() > lease_end + 0.1, timeout=120, what="the lease to end")
        out = site.manage("deliver_pending")
    else:
        assert time.time() >= lease_end, f"took back a send whose lease still ran: {out}"
    assert "released 1, enqueued 0, delivered 1, still waiting 0" in out, out

    final = _email(site, token, email["id"])
    assert final["status"] == "sent" and final["sent_via"]["name"] == "backup", final
    assert final["possible_duplicate"] and final["tries"] == 2
    outcomes = [(a["try_number"], a["provider"]["name"], a["outcome"]) for a in final["attempts"]]
    assert outcomes == [(2, "sink", "provider_error"), (2, "backup", "sent")]
    assert [r.message["Message-ID"] for r in smtp_sink.received] == [final["message_id"]]
    assert stalling_smtp.received == []

    replay = _replay_answers_the_final_email(site, token, body, "order-2", email["id"])
    assert replay["status"] == "sent" and replay["sent_via"]["name"] == "backup"
    assert len(smtp_sink.received) == 1, "the replay sent nothing"
