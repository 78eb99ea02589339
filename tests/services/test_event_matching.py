"""A provider's event finds its email by message id through an index, on SQLite and PostgreSQL
alike: the plan of each lookup names the partial index, so a webhook for an account with a
million emails reads a handful of index entries, not every email of the account."""

from __future__ import annotations

import pytest
from django.db import connection

from mailer.models import DeliveryAttempt, Email
from mailer.services.events import by_message_id

pytestmark = pytest.mark.django_db


def _plan(queryset) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # a tiny table is scanned unless told otherwise
            cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def test_the_email_and_attempt_lookups_use_their_indexes(account):
    emails = Email.objects.filter(account_id=account.pk).order_by()
    plan = _plan(by_message_id(emails, {"pm-1", "pm-2"}))
    assert "email_provider_message" in plan, plan

    attempts = by_message_id(DeliveryAttempt.objects.order_by(), {"pm-1"})
    plan = _plan(attempts.filter(email__account_id=account.pk))
    assert "attempt_provider_message" in plan, plan


def test_an_empty_message_id_matches_nothing(account):
    Email.objects.create(account=account, from_email="a@example.com", to=["b@example.org"])
    emails = Email.objects.filter(account_id=account.pk)
    assert not by_message_id(emails, {""}).exists()
