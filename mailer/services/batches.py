"""Batch send: many emails in one request, each checked as a single send, the good ones stored in
one transaction; then put on the broker in chunk messages (queue mode) or delivered in turn
within one time budget (sync mode). An Idempotency-Key covers the whole batch (EmailBatch)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mailer import accountcache, listcache
from mailer.errors import Conflict, InvalidInput
from mailer.models import Email, EmailBatch, EmailStatus, ProviderConfig
from mailer.validation import OutgoingEmail

from .emails import IDEMPOTENCY_WINDOW, email_finish, email_try, outcome_fields, sync_retry
from .enqueue import emails_enqueue
from .outgoing import all_suppressed_reason, email_row, initial_state
from .suppressions import bare, suppressed_among
from .webhooks_out import webhooks_email_finished

logger = logging.getLogger("mailer.services")

_LOOKUP_CHUNK = 500  # addresses per suppression query (far below any database's parameter cap)


@dataclass(frozen=True)
class BatchEmail:
    """A good item of a batch: the email, validated, the provider it asks for first, and when
    it is to be sent (None: now; see outgoing.schedule_time)."""

    outgoing: OutgoingEmail
    requested: ProviderConfig | None = None
    send_at: datetime | None = None


# An item as the caller read it: a BatchEmail to store, or the problem (a JSON object, the
# caller's own answer for it) that refused it; kept as it is, in its place.
Item = BatchEmail | dict[str, Any]


@dataclass(frozen=True)
class BatchResult:
    """Per item, in the order given (batch_results); `replayed` when an Idempotency-Key's
    earlier batch answers."""

    results: list[dict[str, Any]]
    replayed: bool = False


class BatchKeyReused(InvalidInput):
    """The batch's Idempotency-Key was already used with a different batch."""


class BatchInFlight(Conflict):
    """The batch's Idempotency-Key is held by a batch still being delivered (sync mode)."""


def batch_limits(count: int) -> None:
    """InvalidInput when a batch of `count` emails is more than this mode takes: over
    BATCH_MAX_EMAILS, or in sync mode (delivered within the request) over
    BATCH_SYNC_MAX_EMAILS."""
    most = settings.BATCH_MAX_EMAILS
    if count > most:
        raise InvalidInput(
            {"emails": [f"at most {most} emails a batch"]},
            message=f"A batch holds at most {most} emails (BATCH_MAX_EMAILS); this one has "
            f"{count}. Send it as smaller batches.",
        )
    most = settings.BATCH_SYNC_MAX_EMAILS
    if settings.DELIVERY_MODE != "queue" and count > most:
        raise InvalidInput(
            {"emails": [f"at most {most} emails a batch in sync mode"]},
            message=f"In sync mode a batch is delivered within the request, so it holds at "
            f"most {most} emails (BATCH_SYNC_MAX_EMAILS); this one has {count}. Send smaller "
            "batches, or run in queue mode (DELIVERY_MODE=queue).",
        )


def batch_fingerprint(parts: Iterable[str]) -> str:
    """What a batch's Idempotency-Key stands for: its items' own fingerprints, in order."""
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def emails_batch_send(
    *, account, items: list[Item], idempotency_key: str = "", fingerprint: str = ""
) -> BatchResult:
    """Store the batch's good items in one transaction (one bulk insert), then queue them
    (queue mode: chunk messages after the commit) or deliver them in turn (sync mode); or
    answer the earlier batch that holds the Idempotency-Key. Recipients on the suppression list
    are left out; an email with none left is stored failed and no provider is contacted. If
    the transaction fails nothing is stored."""
    batch_limits(len(items))
    if idempotency_key:
        earlier = _earlier_batch(account, idempotency_key, fingerprint)
        if earlier is not None:
            return BatchResult(batch_results(account, earlier.items), replayed=True)
    queued = settings.DELIVERY_MODE == "queue"
    entries, rows = _rows(account, items, queued=queued)
    try:
        with transaction.atomic():
            stored = _store(account, entries, rows, idempotency_key, fingerprint, queued=queued)
    except IntegrityError:
        if not idempotency_key:
            raise
        earlier = _earlier_batch(account, idempotency_key, fingerprint)
        if earlier is None:
            raise BatchInFlight("Idempotency-Key contention; retry the request.") from None
        return BatchResult(batch_results(account, earlier.items), replayed=True)
    if not queued:
        _deliver_in_turn([row for row in stored if row.status == EmailStatus.SENDING])
        if idempotency_key:
            EmailBatch.objects.filter(account=account, idempotency_key=idempotency_key).update(
                finished_at=timezone.now()
            )
        listcache.bump(account.pk)
    return BatchResult(batch_results(account, entries))


def _store(account, entries, rows, key: str, fingerprint: str, *, queued: bool) -> list[Email]:
    """Within the caller's transaction: the emails (one bulk insert, ids filled into
    `entries`), the batch's key when given, the outbox messages of the emails stored failed;
    in queue mode the chunk messages and one list-cache bump once it commits."""
    stored = Email.objects.bulk_create(rows)  # sets each row's pk (PostgreSQL, SQLite)
    for entry in entries:
        if "row" in entry:
            entry["id"] = entry.pop("row").pk
    if key:
        EmailBatch.objects.create(
            account=account,
            idempotency_key=key,
            request_fingerprint=fingerprint,
            items=_storable(entries),
            finished_at=timezone.now() if queued else None,
        )
    for row in stored:
        if row.status == EmailStatus.FAILED:  # every recipient suppressed
            webhooks_email_finished(email=row)
    if queued:
        ids = [row.pk for row in stored if row.status == EmailStatus.QUEUED]
        transaction.on_commit(lambda: _enqueue(account.pk, ids))
    return stored


def _storable(value: Any) -> Any:
    """`value` as JSON any database keeps: a refused item's problem may quote what the client
    sent (a field name), and PostgreSQL's jsonb takes neither NUL nor a lone surrogate."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _enqueue(account_id: int, ids: list[int]) -> None:
    """After the commit: one list-cache bump, then the chunk messages (emails_enqueue: one
    producer connection; what the broker does not take waits for the sweep). Never raises."""
    listcache.bump(account_id)
    try:
        emails_enqueue(email_ids=ids)
    except Exception:  # the database went away after the commit: the sweep still has them
        logger.exception("batch of %d email(s): could not enqueue; left to the sweep", len(ids))


def _rows(account, items: list[Item], *, queued: bool) -> tuple[list[dict], list[Email]]:
    """(an entry per item: {"problem"} or {"row", "all_suppressed"?}, the rows to insert)."""
    dead = _suppressed(account, [i.outgoing for i in items if isinstance(i, BatchEmail)])
    entries, rows = [], []
    for item in items:
        if not isinstance(item, BatchEmail):
            entries.append({"problem": item})
            continue
        out = item.outgoing
        recipients = {f: [a for a in getattr(out, f) if bare(a) not in dead] for f in _FIELDS}
        dropped = sorted({bare(a) for f in _FIELDS for a in getattr(out, f)} & dead)
        state = initial_state(queued=queued, send_at=item.send_at)
        entry: dict[str, Any] = {}
        if not any(recipients.values()):  # nobody left to send to: no provider is contacted
            state = {"status": EmailStatus.FAILED, "failure_reason": all_suppressed_reason(dropped)}
            entry["all_suppressed"] = True
        row = email_row(
            account, out, requested_provider=item.requested, suppressed=dropped, **state
        )
        row.to, row.cc, row.bcc = recipients["to"], recipients["cc"], recipients["bcc"]
        entries.append({"row": row, **entry})
        rows.append(row)
    return entries, rows


_FIELDS = ("to", "cc", "bcc")


def _suppressed(account, emails: list[OutgoingEmail]) -> set[str]:
    """The addresses (bare) among the emails' recipients that are on the account's list."""
    everyone = sorted({a for out in emails for f in _FIELDS for a in getattr(out, f)})
    dead: set[str] = set()
    for start in range(0, len(everyone), _LOOKUP_CHUNK):
        dead |= {
            bare(a) for a in suppressed_among(account, everyone[start : start + _LOOKUP_CHUNK])
        }
    return dead


def _deliver_in_turn(emails: list[Email]) -> None:
    """Sync mode: one try of each email, in order, all within SEND_BUDGET_SECONDS in total (a
    try gets what is left of it). Those not reached in time are handed to the sweep `queued`,
    as a single send whose budget ran out; so is one whose try ran out of time untried."""
    end = time.monotonic() + settings.SEND_BUDGET_SECONDS
    for position, email in enumerate(emails):
        budget = end - time.monotonic()
        if budget <= 0:
            _hand_to_sweep(emails[position:])
            return
        with accountcache.pinned(email.account_id):
            delivery = email_try(email=email, budget=budget, suppressions_checked=True)
            retry = sync_retry(delivery)
            email_finish(email=email, fields=outcome_fields(email, delivery, retry_at=retry))


def _hand_to_sweep(emails: list[Email]) -> None:
    """Emails this request claimed but never tried: `queued` and due now, not counted as a
    try, for the sweep (they keep their place: nobody else takes a `sending` email)."""
    budget = settings.SEND_BUDGET_SECONDS
    Email.objects.filter(pk__in=[e.pk for e in emails], status=EmailStatus.SENDING).update(
        status=EmailStatus.QUEUED,
        tries=0,
        claimed_at=None,
        lease_expires_at=None,
        next_attempt_at=timezone.now(),
        enqueued_at=None,
        failure_reason=f"Not reached within the batch's {budget:g} s (SEND_BUDGET_SECONDS); "
        "the sweep delivers it.",
    )


def _earlier_batch(account, key: str, fingerprint: str) -> EmailBatch | None:
    """The batch that holds this key within the window, or None (an expired one releases it).
    BatchKeyReused for a different batch; BatchInFlight while it is still being delivered."""
    earlier = EmailBatch.objects.filter(account=account, idempotency_key=key).first()
    if earlier is None:
        return None
    now = timezone.now()
    if earlier.created_at < now - IDEMPOTENCY_WINDOW:
        EmailBatch.objects.filter(pk=earlier.pk).delete()  # its emails stay
        return None
    if earlier.request_fingerprint != fingerprint:
        raise BatchKeyReused(
            {"Idempotency-Key": ["already used with a different batch"]},
            message="This Idempotency-Key was already used with a different request; use a new "
            "key for a new batch.",
        )
    lease = timedelta(seconds=settings.SYNC_SENDING_LEASE_SECONDS)
    if earlier.finished_at is None and earlier.created_at > now - lease:
        raise BatchInFlight(
            "A batch with this Idempotency-Key is still being delivered; retry later to get "
            "its result."
        )
    return earlier


def batch_results(account, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per entry, in order: {"index", "problem"}, or {"index", "id", "status",
    "failure_reason", "suppressed", "all_suppressed"} as the email is stored now."""
    ids = [entry["id"] for entry in entries if "id" in entry]
    found = {
        pk: (status, reason, suppressed)
        for pk, status, reason, suppressed in Email.objects.filter(
            account=account, pk__in=ids
        ).values_list("pk", "status", "failure_reason", "suppressed")
    }
    results = []
    for index, entry in enumerate(entries):
        if "id" not in entry:
            results.append({"index": index, "problem": entry["problem"]})
            continue
        status, reason, suppressed = found.get(entry["id"], (None, "", []))
        results.append({"index": index, "id": entry["id"], "status": status,
                        "failure_reason": reason, "suppressed": suppressed,
                        "all_suppressed": bool(entry.get("all_suppressed"))})  # fmt: skip
    return results
