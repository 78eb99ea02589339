"""Queue mode's worker path in process, against a real SMTP sink: what one try costs in queries,
the claim as one committed statement, and the sweep's chunk messages (one message, several
emails): each email claimed exactly once however the chunk's messages race or die."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from harness.factories import loopback_smtp
from mailer import listcache
from mailer.models import Email, EmailStatus
from mailer.services import email_claim, email_create, email_process, emails_sweep
from mailer.services import queue as queue_service
from mailer.services.enqueue import chunk_size, chunk_time_limits
from mailer.services.queue import emails_process
from tests.conftest import outgoing

pytestmark = pytest.mark.django_db

# Measured: the claim (1 UPDATE ... RETURNING), the suppression list (1), the failover order
# (1), the attempt (1 INSERT), the outcome (UPDATE and the webhook endpoints, in a savepoint
# here: 4 with it). Before issue 13: 9 (a separate SELECT of the claimed row).
QUERIES_PER_TRY = 8


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


def _queued(account, count: int = 1) -> list[int]:
    return [email_create(account=account, outgoing=outgoing(), queued=True)[0].pk
            for _ in range(count)]  # fmt: skip


def _times_received(smtp_sink, ids: list[int]) -> dict[int, int]:
    """Email id -> how many times the sink received it (by Message-ID)."""
    seen = Counter(received.message["Message-ID"] for received in smtp_sink.received)
    message_ids = dict(Email.objects.filter(pk__in=ids).values_list("pk", "message_id"))
    return {pk: seen[message_ids[pk]] for pk in ids}


def test_a_worker_try_costs_a_bounded_number_of_queries(account, sink_provider):
    first, second = _queued(account, 2)
    email_process(email_id=first)  # warm: the provider's pooled connection
    with CaptureQueriesContext(connection) as queries:
        assert email_process(email_id=second) == "sent"
    statements = "\n".join(query["sql"][:120] for query in queries.captured_queries)
    assert len(queries) <= QUERIES_PER_TRY, statements
    assert sum(sql["sql"].lstrip().startswith("SELECT") for sql in queries.captured_queries) <= 3


def test_the_claim_bumps_no_list_cache_and_the_outcome_bumps_it_once(account, sink_provider):
    [pk] = _queued(account)
    before = listcache.version(account.pk)
    claimed = email_claim(email_id=pk)
    assert claimed is not None and listcache.version(account.pk) == before
    queue_service.email_finish(email=claimed, fields={"status": EmailStatus.SENT})
    assert listcache.version(account.pk) != before


def test_the_claim_returns_the_row_as_stored_with_its_account_and_requested_provider(
    account, sink_provider
):
    email, _ = email_create(
        account=account, outgoing=outgoing(), queued=True, requested_provider=sink_provider
    )
    with CaptureQueriesContext(connection) as queries:
        claimed = email_claim(email_id=email.pk)
        assert claimed.account.pk == account.pk and claimed.requested_provider == sink_provider
    assert len(queries) == 2  # the claim and the requested provider
    stored = Email.objects.get(pk=email.pk)
    for field in Email._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert stored.status == EmailStatus.SENDING and stored.tries == 1
    assert stored.lease_expires_at == stored.claimed_at + timedelta(
        seconds=settings.SENDING_LEASE_SECONDS
    )
    assert claimed.account.username == account.username  # the rest loads when read


@pytest.mark.django_db(transaction=True)
def test_the_claim_is_one_statement_committed_at_once(account):
    [pk] = _queued(account)
    with CaptureQueriesContext(connection) as queries:
        assert email_claim(email_id=pk) is not None
    assert len(queries) == 1 and "RETURNING" in queries[0]["sql"]
    assert not connection.in_atomic_block and connection.get_autocommit()
    raw = connection.connection  # and nothing left open at the driver's level either
    if connection.vendor == "postgresql":
        from psycopg import pq

        assert raw.info.transaction_status == pq.TransactionStatus.IDLE
    else:
        assert not raw.in_transaction
    assert email_claim(email_id=pk) is None


def test_a_chunk_claims_only_what_is_left_and_each_exactly_once(account, sink_provider, smtp_sink):
    done, taken, *rest = ids = _queued(account, 5)
    assert email_process(email_id=done) == "sent"
    assert email_claim(email_id=taken) is not None  # another worker is at it
    assert emails_process(email_ids=ids) == {"not claimed": 2, "sent": 3}
    assert emails_process(email_ids=ids) == {"not claimed": 5}  # the message came twice
    assert _times_received(smtp_sink, ids) == {pk: int(pk != taken) for pk in ids}
    statuses = dict(Email.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {pk: "sending" if pk == taken else "sent" for pk in ids}
    assert set(Email.objects.filter(pk__in=rest).values_list("tries", flat=True)) == {1}


def test_two_workers_on_the_same_chunk_never_both_send_one_email(
    account, sink_provider, smtp_sink, monkeypatch
):
    """The second worker takes the same chunk while the first is in its first email's try:
    it claims what the first has not reached, and the first then finds those taken."""
    ids = _queued(account, 4)
    real_try, second = queue_service.email_try, {}

    def first_worker_try(**kwargs):
        if "started" not in second:
            second["started"] = True
            second["ended"] = emails_process(email_ids=ids)  # its tries: the real ones
        return real_try(**kwargs)

    monkeypatch.setattr(queue_service, "email_try", first_worker_try)
    first = emails_process(email_ids=ids)
    assert second["ended"] == {"not claimed": 1, "sent": 3}
    assert first == {"sent": 1, "not claimed": 3}
    assert _times_received(smtp_sink, ids) == dict.fromkeys(ids, 1)
    assert not Email.objects.filter(pk__in=ids, possible_duplicate=True).exists()


class WorkerDied(BaseException):
    """Stands for kill -9: nothing after it runs, nothing catches it."""


def test_a_worker_dying_mid_chunk_leaves_the_rest_to_the_sweep(
    account, sink_provider, smtp_sink, monkeypatch, settings
):
    settings.SENDING_LEASE_SECONDS, settings.REQUEUE_AFTER_SECONDS = 600, 300
    ids = _queued(account, 4)
    real_try, tries = queue_service.email_try, []

    def dies_at_the_second(**kwargs):
        tries.append(kwargs["email"].pk)
        if len(tries) == 2:
            raise WorkerDied
        return real_try(**kwargs)

    monkeypatch.setattr(queue_service, "email_try", dies_at_the_second)
    with pytest.raises(WorkerDied):
        emails_process(email_ids=ids)
    monkeypatch.undo()
    statuses = list(
        Email.objects.filter(pk__in=ids).order_by("pk").values_list("status", flat=True)
    )
    assert statuses == ["sent", "sending", "queued", "queued"]
    # Until the lease runs out and the message counts as lost, the sweep leaves them alone.
    assert emails_sweep(inline=True).__dict__ | {"webhooks": 0} == {
        "released": 0, "enqueued": 0, "delivered": 0, "waiting": 0, "webhooks": 0}  # fmt: skip
    past = timezone.now() - timedelta(seconds=601)
    Email.objects.filter(pk=ids[1]).update(claimed_at=past, lease_expires_at=past)
    Email.objects.filter(pk__in=ids[2:]).update(enqueued_at=past)
    report = emails_sweep(inline=True)
    assert (report.released, report.delivered, report.waiting) == (1, 3, 0)
    assert _times_received(smtp_sink, ids) == dict.fromkeys(ids, 1)
    emails = {e.pk: e for e in Email.objects.filter(pk__in=ids)}
    assert {e.status for e in emails.values()} == {"sent"}
    flagged = {pk for pk, e in emails.items() if e.possible_duplicate}
    assert flagged == {ids[1]}, "only the try that was under way may have gone out"


def test_a_chunk_fits_its_time_limits_and_the_broker_visibility_timeout(settings):
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for due in (1, 10, 16, 17, 100, 1000, 100_000):
        size = chunk_size(due)
        soft, hard = chunk_time_limits(size)
        assert 1 <= size <= 50 and hard <= visibility, (due, size)
        # Each try's budget (0.8 x DELIVERY_TIME_LIMIT) fits under the soft limit.
        assert size * 0.8 * settings.DELIVERY_TIME_LIMIT < soft < hard
    assert chunk_size(10) == 1, "a few due emails still go out one a message, in parallel"
    assert chunk_time_limits(1) == (
        settings.CELERY_TASK_SOFT_TIME_LIMIT,
        settings.CELERY_TASK_TIME_LIMIT,
    )


def test_celery_keeps_database_connections_across_tasks(settings):
    """Celery's Django fixup closes every connection around each task unless DB_REUSE_MAX is
    set (then once per that many tasks); with it, only Django's own rule (CONN_MAX_AGE, a
    broken connection) closes one, checked per task (emailservice/celery.py)."""
    from celery import signals
    from celery.fixups.django import DjangoWorkerFixup

    from emailservice import celery as celery_module

    fixup = DjangoWorkerFixup(celery_module.app)
    closed = []
    fixup._close_database = lambda: closed.append(1)  # the fixup's own "close them all"
    from mailer.tasks import deliver_email as task

    for _ in range(1000):
        fixup.on_task_prerun(sender=task)
        fixup.on_task_postrun(sender=task)
    assert closed == [], "the fixup no longer closes connections per task"
    receivers = {r() for _, r in signals.task_prerun.receivers} & {
        r() for _, r in signals.task_postrun.receivers
    }
    assert celery_module._close_old_connections in receivers
