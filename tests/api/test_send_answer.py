"""A sync send answers from what it wrote: the same body a read gives, with a bounded number of
statements, one list-cache bump after the outcome is stored, attachments decoded once."""

from __future__ import annotations

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from harness.factories import loopback_smtp
from mailer import listcache
from mailer.models import Email

EMAIL = {"from": "shop@example.com", "to": ["ann@example.org"], "subject": "Order 42",
         "text": "Thanks.", "html": "<p>Thanks.</p>"}  # fmt: skip
# Sent over base64 with a pdf's first bytes; its size is what the detail must say.
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


def test_the_answer_is_what_a_read_gives(api, sink_provider):
    body = EMAIL | {"attachments": [{"filename": "a.pdf", "content_type": "application/pdf",
                                     "content": base64.b64encode(PDF).decode()}]}  # fmt: skip
    sent = api.post("/api/v1/emails", body)
    assert sent.status_code == 201
    read = api.get(f"/api/v1/emails/{sent.json()['id']}")
    assert sent.json() == read.json()
    assert sent.json()["attachments"] == [
        {"filename": "a.pdf", "content_type": "application/pdf", "size": len(PDF)}
    ]
    assert [a["outcome"] for a in sent.json()["attempts"]] == ["sent"]


def test_a_failover_answer_lists_every_attempt_as_stored(api, add_provider, closed_port, smtp_sink):
    add_provider("smtp", name="down", settings=loopback_smtp(closed_port), priority=1)
    add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port), priority=2)
    sent = api.post("/api/v1/emails", EMAIL)
    assert sent.status_code == 201
    assert [a["outcome"] for a in sent.json()["attempts"]] == ["provider_error", "sent"]
    assert sent.json() == api.get(f"/api/v1/emails/{sent.json()['id']}").json()


def test_attachments_are_stored_as_sent_with_their_size(api, sink_provider):
    encoded = base64.b64encode(PDF).decode()
    body = EMAIL | {"attachments": [{"filename": "a.pdf", "content_type": "application/pdf",
                                     "content": encoded}]}  # fmt: skip
    email = Email.objects.get(pk=api.post("/api/v1/emails", body).json()["id"])
    assert email.attachments == [{"filename": "a.pdf", "content_type": "application/pdf",
                                  "content": encoded, "size": len(PDF)}]  # fmt: skip


def test_an_email_stored_before_sizes_were_recorded_still_shows_its_size(api, sink_provider):
    sent = api.post("/api/v1/emails", EMAIL | {"attachments": [
        {"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}]})  # fmt: skip
    email = Email.objects.get(pk=sent.json()["id"])
    email.attachments = [{k: v for k, v in a.items() if k != "size"} for a in email.attachments]
    email.save(update_fields=["attachments"])
    assert api.get(f"/api/v1/emails/{email.pk}").json()["attachments"][0]["size"] == 5


def test_one_list_bump_per_email_once_its_outcome_is_stored(api, sink_provider, monkeypatch):
    seen = []
    bump = listcache.bump

    def recording(account_id):
        seen.append(list(Email.objects.values_list("status", flat=True)))
        bump(account_id)

    monkeypatch.setattr(listcache, "bump", recording)
    assert api.post("/api/v1/emails", EMAIL).status_code == 201
    assert seen == [["sent"]]


def test_a_sync_send_is_a_bounded_number_of_statements(api, sink_provider):
    api.post("/api/v1/emails", EMAIL)  # the token is looked up and remembered
    with CaptureQueriesContext(connection) as queries:
        assert api.post("/api/v1/emails", EMAIL).status_code == 201
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT")  # transactions, not work
    statements = [q["sql"] for q in queries if not q["sql"].startswith(control)]
    # Suppressions, the insert, the providers, the attempt, the outcome, the webhook endpoints.
    assert len(statements) <= 6, statements
