"""POST /api/v1/emails/batch through the real Django stack, real Redis and a real SMTP sink:
each item read and refused as a single send, the good ones stored in one transaction, sync
delivery within one budget, and an Idempotency-Key over the whole batch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer.models import Email, EmailBatch
from mailer.services.suppressions import suppression_add
from mailer.services.templates import template_create

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/emails/batch"


def item(index: int, **fields) -> dict:
    return {"from": "shop@example.com", "to": f"c{index}@example.org",
            "subject": f"Order {index}", "text": "Thanks."} | fields  # fmt: skip


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


@pytest.fixture
def queue_mode(settings):
    settings.DELIVERY_MODE = "queue"  # stored and answered; no worker runs in these tests


# Items that a single send would refuse, and the field each problem names.
BAD = {
    3: ({"to": "not an address"}, "to"),
    7: ({"attachments": [{"filename": "a.txt", "content": "%%%"}]}, "attachments[0].content"),
    11: ({"frm": "x"}, "frm"),
}


def test_good_items_are_stored_and_bad_ones_named_in_order(api, queue_mode, sink_provider):
    emails = [item(i, **BAD[i][0]) if i in BAD else item(i) for i in range(500)]
    answer = api.post(BATCH, {"emails": emails})
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["stored"], body["refused"]) == (497, 3)
    assert [r["index"] for r in body["results"]] == list(range(500))
    for result in body["results"]:
        if result["index"] in BAD:
            assert "id" not in result and result["problem"]["status"] == 422
            fields = [e["field"] for e in result["problem"]["errors"]]
            assert BAD[result["index"]][1] in fields, result
        else:
            assert result["status"] == "queued" and "problem" not in result
    stored = {e.pk: e for e in Email.objects.all()}
    assert len(stored) == 497 and {e.status for e in stored.values()} == {"queued"}
    for result in body["results"]:
        if "id" in result:
            assert stored[result["id"]].subject == f"Order {result['index']}"


def test_the_problems_are_a_single_sends(api, queue_mode, sink_provider):
    bad = item(0, to="not an address")
    single = api.post("/api/v1/emails", bad).json()
    [result] = api.post(BATCH, {"emails": [bad]}).json()["results"]
    assert result["problem"]["detail"] == single["detail"]
    assert result["problem"]["errors"] == single["errors"]


def test_over_batch_max_emails_is_422_and_nothing_is_stored(api, queue_mode, settings):
    settings.BATCH_MAX_EMAILS = 5
    answer = api.post(BATCH, {"emails": [item(i) for i in range(6)]})
    assert answer.status_code == 422
    assert "BATCH_MAX_EMAILS" in answer.json()["detail"]
    assert not Email.objects.exists()


def test_sync_mode_over_batch_sync_max_emails_is_422(api, settings, sink_provider):
    settings.BATCH_SYNC_MAX_EMAILS = 3
    answer = api.post(BATCH, {"emails": [item(i) for i in range(4)]})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "queue mode" in detail and "smaller batches" in detail
    assert not Email.objects.exists()


def test_sync_mode_delivers_each_email_once(api, sink_provider, smtp_sink):
    answer = api.post(BATCH, {"emails": [item(i) for i in range(5)] + [item(5, to="bad")]})
    assert answer.status_code == 200, answer.content
    results = answer.json()["results"]
    assert [r.get("status") for r in results] == ["sent"] * 5 + [None]
    subjects = sorted(received.message["Subject"] for received in smtp_sink.received)
    assert subjects == [f"Order {i}" for i in range(5)]
    assert {e.status for e in Email.objects.all()} == {"sent"}


def test_sync_budget_leaves_the_rest_queued_for_the_sweep(api, settings, sink_provider):
    settings.SEND_BUDGET_SECONDS = 0
    results = api.post(BATCH, {"emails": [item(i) for i in range(3)]}).json()["results"]
    assert [r["status"] for r in results] == ["queued"] * 3
    assert "SEND_BUDGET_SECONDS" in results[0]["failure_reason"]
    email = Email.objects.get(pk=results[0]["id"])
    assert (email.status, email.tries, email.claimed_at) == ("queued", 0, None)


def test_an_item_whose_every_recipient_is_suppressed_is_stored_failed(api, account, queue_mode):
    suppression_add(account=account, address="c1@example.org")
    results = api.post(BATCH, {"emails": [item(0), item(1)]}).json()["results"]
    assert results[0]["status"] == "queued" and "problem" not in results[0]
    assert results[1]["status"] == "failed" and results[1]["suppressed"] == ["c1@example.org"]
    assert results[1]["problem"]["status"] == 422
    assert Email.objects.get(pk=results[1]["id"]).status == "failed"


def test_idempotent_replay_answers_the_first_batch(api, sink_provider, smtp_sink):
    batch = {"emails": [item(0), item(1, to="bad"), item(2)]}
    headers = {"Idempotency-Key": "batch-1"}
    first = api.post(BATCH, batch, headers=headers)
    again = api.post(BATCH, batch, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Email.objects.count() == 2 and len(smtp_sink.received) == 2

    other = api.post(BATCH, {"emails": [item(0)]}, headers=headers)
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    assert Email.objects.count() == 2


def test_a_repeat_while_the_first_is_in_flight_is_409(api, account, sink_provider):
    from mailer.api.batches import _read_item
    from mailer.services import batch_fingerprint

    batch = {"emails": [item(0)]}
    _, part = _read_item(account, batch["emails"][0])
    EmailBatch.objects.create(account=account, idempotency_key="k", items=[],
                              request_fingerprint=batch_fingerprint([part]))  # fmt: skip
    answer = api.post(BATCH, batch, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 409
    assert not Email.objects.exists()


def test_a_batch_key_expires_after_24_hours(api, sink_provider, smtp_sink):
    headers = {"Idempotency-Key": "daily"}
    first = api.post(BATCH, {"emails": [item(0)]}, headers=headers).json()
    EmailBatch.objects.update(created_at=EmailBatch.objects.get().created_at - timedelta(hours=25))
    second = api.post(BATCH, {"emails": [item(0)]}, headers=headers).json()
    assert second["results"][0]["id"] != first["results"][0]["id"]
    assert len(smtp_sink.received) == 2


def test_templates_in_items(api, account, sink_provider, smtp_sink):
    template_create(account=account, name="welcome", subject="Welcome, {{ name }}",
                    text="Hello {{ name }}.")  # fmt: skip
    send = {"from": "shop@example.com", "to": "ann@example.org", "template": "welcome"}
    emails = [send | {"variables": {"name": "Ann"}}, send | {"variables": {}}]
    results = api.post(BATCH, {"emails": emails}).json()["results"]
    assert results[0]["status"] == "sent"
    assert Email.objects.get(pk=results[0]["id"]).subject == "Welcome, Ann"
    assert [e["field"] for e in results[1]["problem"]["errors"]] == ["variables.name"]


def test_another_accounts_provider_is_that_items_problem(
    api, queue_mode, sink_provider, add_provider, other_account
):
    theirs = add_provider("smtp", name="theirs", owner=other_account, settings=loopback_smtp(9))
    emails = [item(0, provider=sink_provider.pk), item(1, provider=theirs.pk)]
    results = api.post(BATCH, {"emails": emails}).json()["results"]
    assert Email.objects.get(pk=results[0]["id"]).requested_provider == sink_provider
    assert [e["field"] for e in results[1]["problem"]["errors"]] == ["provider"]
    assert Email.objects.count() == 1


def test_the_batch_has_its_own_body_limit(api, queue_mode, settings, sink_provider):
    settings.MAX_MESSAGE_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4000
    settings.BATCH_MAX_BYTES = 20000
    emails = [item(i, text="x" * 1000) for i in range(10)]  # ~11 kB: over one email's limit
    assert api.post(BATCH, {"emails": emails}).status_code == 202
    too_big = api.post(BATCH, {"emails": emails * 2})
    assert too_big.status_code == 413
    assert "BATCH_MAX_BYTES" in too_big.json()["detail"]
    assert Email.objects.count() == 10


def test_other_accounts_cannot_replay_a_batch(api, client, other_account, queue_mode):
    headers = {"Idempotency-Key": "shared"}
    mine = api.post(BATCH, {"emails": [item(0)]}, headers=headers).json()
    theirs = ApiClient.django(client, make_token(other_account))
    answer = theirs.post(BATCH, {"emails": [item(0)]}, headers=headers)
    assert answer.status_code == 202 and "Idempotent-Replayed" not in answer
    assert answer.json()["results"][0]["id"] != mine["results"][0]["id"]


def test_a_refused_item_quoting_a_nul_or_a_lone_surrogate_is_remembered(api, queue_mode):
    """Found by the fuzz on PostgreSQL: a refused item's problem names the client's unknown
    field, and jsonb takes neither NUL nor a lone surrogate; the batch's key row keeps it
    readable instead of failing with a 500."""
    batch = {"emails": [item(0), item(1) | {"\x00x\ud800": 1}]}
    headers = {"Idempotency-Key": "hostile-1"}
    first = api.post(BATCH, batch, headers=headers)
    assert first.status_code == 202, first.content
    assert [("id" in r, "problem" in r) for r in first.json()["results"]] == [
        (True, False),
        (False, True),
    ]
    again = api.post(BATCH, batch, headers=headers)
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert [r.get("id") for r in again.json()["results"]] == [
        r.get("id") for r in first.json()["results"]
    ]
    assert Email.objects.count() == 1


class _Died(BaseException):
    """The web worker killed mid-batch (WEB_TIMEOUT, the OOM killer): nothing after it runs."""


def test_a_sync_batch_whose_worker_dies_midway_is_finished_by_the_sweep_each_once(
    api, settings, sink_provider, smtp_sink, monkeypatch
):
    from django.utils import timezone

    from mailer.services import batches, emails_sweep

    settings.DELIVERY_MODE = "sync"
    real_try, tries = batches.email_try, []

    def dies_on_the_third(**kwargs):
        tries.append(kwargs["email"].pk)
        if len(tries) == 3:
            raise _Died
        return real_try(**kwargs)

    monkeypatch.setattr(batches, "email_try", dies_on_the_third)
    with pytest.raises(_Died):
        api.post(BATCH, {"emails": [item(i) for i in range(6)]})
    assert len(smtp_sink.received) == 2
    monkeypatch.setattr(batches, "email_try", real_try)

    left = Email.objects.filter(status="sending")
    assert left.count() == 4, "claimed by the dead request: the sweep waits for their lease"
    assert emails_sweep(inline=True).released == 0  # their short lease still runs
    left.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    report = emails_sweep(inline=True)
    assert (report.released, report.delivered) == (4, 4)

    assert sorted(Email.objects.values_list("status", flat=True)) == ["sent"] * 6
    subjects = [received.message["Subject"] for received in smtp_sink.received]
    assert sorted(subjects) == [f"Order {i}" for i in range(6)], "each exactly once"
    # What was in flight when it died may have reached the provider: flagged, not hidden.
    assert Email.objects.get(pk=tries[2]).possible_duplicate
