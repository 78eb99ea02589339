"""mailer.selectors.statements: a query shape compiled once per connection, never other rows
than the ORM's."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.db.models.sql.compiler import SQLCompiler

from mailer.models import Email
from mailer.selectors import statements
from mailer.selectors.cursors import Position


@pytest.fixture(autouse=True)
def fresh_shapes():
    connections["default"].__dict__.pop("_mailer_statements", None)
    yield
    connections["default"].__dict__.pop("_mailer_statements", None)


@pytest.fixture
def compiles(monkeypatch):
    """How many times the ORM compiled a query."""
    seen = []
    original = SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        seen.append(self.query.model)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    return seen


def _emails(account, n: int) -> list[int]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = Email.objects.bulk_create(
        Email(account=account, from_email="a@example.com", to=[f"r{i}@example.org"],
              subject=f"s{i}", text="t", status="sent", possible_duplicate=i % 2 == 0,
              created_at=start + timedelta(seconds=i // 2))
        for i in range(n)
    )  # fmt: skip
    return [e.pk for e in made]


def _newest(account_id, after: Position | None = None):
    def build():
        emails = Email.objects.filter(account_id=account_id)
        if after is not None:
            emails = after.after(emails)
        return emails.order_by("-created_at", "-id").values(
            "id", "to", "created_at", "possible_duplicate"
        )

    params = [account_id, *(after.params() if after else [])]
    return ("test-newest", after is not None), build, params


def test_a_shape_is_compiled_once_and_then_runs_with_each_calls_values(
    account, other_account, compiles
):
    _emails(account, 30)
    _emails(other_account, 7)
    first = statements.rows(*_newest(account.pk), limit=10, offset=5)
    compiled_first = len(compiles)
    assert compiled_first >= 1
    for who, offset in ((account, 0), (other_account, 3), (account, 25)):
        got = statements.rows(*_newest(who.pk), limit=10, offset=offset)
        _, build, _ = _newest(who.pk)
        assert got == list(build()[offset : offset + 10])
    assert len(compiles) == compiled_first + 3  # only the ORM reads of the comparisons
    assert [r["id"] for r in first] == [r["id"] for r in _newest(account.pk)[1]()[5:15]]
    row = first[0]  # converted as the ORM converts: JSON, datetimes, booleans
    assert isinstance(row["to"], list) and row["created_at"].tzinfo is not None
    assert isinstance(row["possible_duplicate"], bool)


def test_a_keyset_shape_runs_with_its_positions_datetimes(account, compiles):
    _emails(account, 20)
    everything = list(_newest(account.pk)[1]())
    statements.rows(*_newest(account.pk, Position.of(everything[3])), limit=4)
    before = len(compiles)
    for at in (1, 6, 11, 19):
        got = statements.rows(*_newest(account.pk, Position.of(everything[at])), limit=4)
        assert got == everything[at + 1 : at + 5]
    assert len(compiles) == before


def test_parameters_that_are_not_the_orms_send_the_shape_through_the_orm(account, compiles, caplog):
    _emails(account, 12)
    key, build, _ = _newest(account.pk)
    wrong = [account.pk + 1000]
    with caplog.at_level(logging.WARNING, logger="mailer.selectors.statements"):
        assert statements.rows(key, build, wrong, limit=5) == list(build()[:5])
    assert "are not the caller's" in caplog.text
    before = len(compiles)
    assert statements.rows(key, build, wrong, limit=5) == list(build()[:5])
    assert len(compiles) == before + 2  # through the ORM (and the comparison's own read)


def test_rows_that_differ_are_checked_again_then_sent_through_the_orm(account, monkeypatch, caplog):
    _emails(account, 12)
    key, build, params = _newest(account.pk)
    monkeypatch.setattr(statements._Compiled, "run", lambda self, *args: [{"id": -1}])
    with caplog.at_level(logging.WARNING, logger="mailer.selectors.statements"):
        for _ in range(4):
            assert statements.rows(key, build, params, limit=5) == list(build()[:5])
    kept = connections["default"].__dict__["_mailer_statements"]
    assert kept[key] == statements._CHECKS
    assert caplog.text.count("rows are not the ORM's") == statements._CHECKS


def test_instances_are_the_orms_with_every_field_loaded(account, other_account, compiles):
    ids = _emails(account, 6) + _emails(other_account, 3)
    Email.objects.filter(pk=ids[2]).update(headers={"X-Tag": "a"}, metadata={"k": [1, 2]})

    def of(account_id, wanted):
        build = lambda: Email.objects.filter(account_id=account_id, pk__in=wanted).order_by("id")  # noqa: E731
        return statements.instances(
            ("test-emails", len(wanted)), Email, build, [account_id, *wanted]
        )

    of(account.pk, ids[:3])
    before = len(compiles)
    got = of(account.pk, ids[1:4])
    assert len(compiles) == before  # compiled once: no ORM query built for this one
    expected = list(Email.objects.filter(pk__in=ids[1:4]).order_by("id"))
    assert [e.pk for e in got] == [e.pk for e in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.get_deferred_fields() == set()
        for field in Email._meta.concrete_fields:
            assert getattr(mine, field.attname) == getattr(theirs, field.attname), field.name
    assert got[1].headers == {"X-Tag": "a"} and got[1].metadata == {"k": [1, 2]}
    assert of(other_account.pk, ids[1:4]) == []  # another account's ids: nothing


def test_a_connection_keeps_a_bounded_number_of_shapes_and_logs_no_values(
    account, monkeypatch, caplog
):
    """A webhook batch's size is a shape: an account posting batches of every size must not
    grow a worker's memory. Past MAX_SHAPES the least recently used shape goes; the warning of
    a failed check names no parameter value (a webhook token is one)."""
    monkeypatch.setattr(statements, "MAX_SHAPES", 5)
    ids = _emails(account, 12)

    def by_ids(wanted):
        build = lambda: Email.objects.filter(pk__in=wanted).order_by("id").values("id")  # noqa: E731
        return statements.rows(("test-by-ids", len(wanted)), build, wanted)

    for n in range(1, 12):
        assert [r["id"] for r in by_ids(ids[:n])] == ids[:n]
    kept = connections["default"].__dict__["_mailer_statements"]
    assert list(kept) == [("test-by-ids", n) for n in range(7, 12)]
    assert [r["id"] for r in by_ids(ids[:1])] == ids[:1]  # dropped, compiled again
    assert list(kept)[-1] == ("test-by-ids", 1) and len(kept) == 5

    secret = "es_webhook-token-that-must-not-be-logged"
    build = lambda: Email.objects.filter(subject=secret).values("id")  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="mailer.selectors.statements"):
        assert statements.rows("test-secret", build, ["something else"]) == []
    assert "are not the caller's" in caplog.text and secret not in caplog.text
