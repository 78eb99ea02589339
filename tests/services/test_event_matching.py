"""A provider's event finds its email by message id through an index, on SQLite and PostgreSQL
alike: the plan of each lookup names the partial index, so a webhook for an account with a
million emails reads a handful of index entries, not every email of the account."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from mailer.models import DeliveryAttempt, Email
from mailer.services.events import by_message_id

pytestmark = pytest.mark.django_db


def _plan(queryset) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # a tiny table is scanned unless told otherwise
            cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def _many_attempts(account, n: int = 2000) -> None:
    """On PostgreSQL, attempts as an account with real traffic has them, analyzed: on empty
    tables the planner's costs tie, and it may pick any index (the email's foreign key, say)."""
    if connection.vendor != "postgresql":
        return
    email = Email.objects.create(account=account, from_email="a@example.com", to=["b@example.org"])
    now = timezone.now()
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(email=email, provider_kind="smtp", provider_name="sink", outcome="sent",
                        provider_message_id=f"seed-{i}", started_at=now)
        for i in range(n)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mailer_deliveryattempt, mailer_email")


def test_the_email_and_attempt_lookups_use_their_indexes(account):
    _many_attempts(account)
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
