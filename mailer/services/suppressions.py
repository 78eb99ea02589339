"""The suppression list: one per account, fed by every provider's bounces, complaints and
unsubscribes, and checked before any provider is contacted (DESIGN.md, "Suppression")."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mailer import accountcache, listcache
from mailer.errors import AppError, InvalidInput, MessageTooLarge
from mailer.models import DeliveryEvent, Email, Suppression
from mailer.validation import check_address, control_character
from mailer.vocabulary import BounceType, EventType, SuppressionReason

logger = logging.getLogger("mailer.services")

# What puts an address on the list at once (a soft bounce counts towards SOFT_BOUNCE_LIMIT).
REASONS = {
    EventType.COMPLAINED: SuppressionReason.COMPLAINED,
    EventType.UNSUBSCRIBED: SuppressionReason.UNSUBSCRIBED,
}
MAX_IMPORT_ROWS = 100_000
MAX_IMPORT_BYTES = 5 * 1024 * 1024  # a CSV upload (API and page); README: Suppression list
MAX_IMPORT_PROBLEMS = 20  # bad lines named in one refusal
_IMPORT_BATCH = 500  # addresses per query while importing (SQLite's parameter limit is far off)
CSV_FIELDS = ("address", "reason", "source", "created_at", "expires_at")


class AllRecipientsSuppressed(AppError):
    """Every recipient of an email is on the account's suppression list: it was stored failed
    and no provider was contacted. `email` is the stored email, `addresses` the suppressed."""

    def __init__(self, email: Email) -> None:
        self.email = email
        self.addresses = list(email.suppressed)
        super().__init__(
            f"Every recipient is on the suppression list ({', '.join(self.addresses)}); email "
            f"{email.pk} was stored as failed and no provider was contacted."
        )


# Text the address parser would give back unchanged (no name, comment, quote or list): most
# addresses, and every one an export holds. Parsing costs ~0.1 ms, which adds up in an import.
_PLAIN = re.compile(r"[^\s<>()\",;:\[\]\\]+")


def bare(address: str) -> str:
    """The address a suppression is kept under: without display name, lower-cased."""
    text = address.strip()
    if _PLAIN.fullmatch(text):
        return text.lower()
    return (parseaddr(address)[1] or address).strip().lower()


def suppressed_among(account, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` (as given) are on the account's list now (from this process's
    memory within a unit of work mailer.accountcache pinned to the account)."""
    given = {bare(a): a for a in addresses}
    if not given:
        return set()
    account_id = getattr(account, "pk", account)

    def load(missing: list[str]) -> dict[str, datetime | None]:
        entries = Suppression.objects.filter(account_id=account_id, address__in=missing)
        return dict(entries.order_by().values_list("address", "expires_at"))

    return {given[address] for address in accountcache.suppressed(account_id, given, load)}


def without_suppressed(account, recipients: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """({"to", "cc", "bcc"} with suppressed addresses left out, the addresses left out)."""
    everyone = [a for field in ("to", "cc", "bcc") for a in recipients[field]]
    dropped = suppressed_among(account, everyone)
    if not dropped:
        return recipients, []
    kept = {field: [a for a in recipients[field] if a not in dropped] for field in recipients}
    return kept, sorted({bare(a) for a in dropped})


def suppression_add(
    *,
    account,
    address: str,
    reason: str = SuppressionReason.MANUAL,
    source: str = "",
    event: DeliveryEvent | None = None,
    expires_at: datetime | None = None,
) -> tuple[Suppression, bool]:
    """Put an address on the list (or keep the entry there, renewing a lapsed expiry); return
    (entry, created)."""
    address = bare(address)
    try:
        with transaction.atomic():
            entry = Suppression.objects.create(
                account=account,
                address=address,
                reason=reason,
                source=source[:120],
                event=event,
                expires_at=expires_at,
            )
    except IntegrityError:
        entry = Suppression.objects.get(account=account, address=address)
        if _renews(entry.expires_at, expires_at):
            entry.expires_at = expires_at
            entry.save(update_fields=["expires_at"])
        return entry, False
    logger.info("account %s: %s suppressed (%s, %s)", account.pk, address, reason, source)
    listcache.bump(account.pk)
    return entry, True


def _renews(current: datetime | None, new: datetime | None) -> bool:
    """Whether adding an address again with expiry `new` extends its entry's `current` one:
    an entry that lapses is kept longer (or for good); a permanent one stays permanent."""
    return current is not None and (new is None or new > current)


def suppression_add_checked(
    *,
    account,
    address: str,
    reason: str = SuppressionReason.MANUAL,
    expires_at: datetime | None = None,
    source: str = "",
) -> tuple[Suppression, bool]:
    """suppression_add for an address a person gave (API, pages): InvalidInput names each bad
    field first (the address, a reason that is not one of SuppressionReason, an expiry that is
    not in the future). A naive expiry is UTC."""
    problems: dict[str, list[str]] = {}
    if problem := check_address(address):
        problems["address"] = [problem]
    if reason not in SuppressionReason.values:
        choices = ", ".join(SuppressionReason.values)
        problems["reason"] = [f"{reason!r} is not a reason; use one of: {choices}."]
    if expires_at is not None:
        expires_at = _aware(expires_at)
        if expires_at <= timezone.now():
            problems["expires_at"] = ["The expiry must be in the future (or left out: never)."]
    if problems:
        raise InvalidInput(problems)
    return suppression_add(
        account=account, address=address, reason=reason, source=source, expires_at=expires_at
    )


def suppression_delete(*, account, address: str) -> bool:
    """Take an address off the account's list; False if it was not on it (an address with a
    control character never is: PostgreSQL refuses a NUL in a query)."""
    if control_character(address):
        return False
    deleted, _ = Suppression.objects.filter(account=account, address=bare(address)).delete()
    if deleted:
        logger.info("account %s: %s no longer suppressed", account.pk, bare(address))
        accountcache.changed(account.pk, accountcache.SUPPRESSIONS)  # no delete signal
        listcache.bump(account.pk)
    return bool(deleted)


def suppression_from_event(*, event: DeliveryEvent) -> Suppression | None:
    """Suppress the event's recipient if the event says to: a hard bounce, a complaint, an
    unsubscribe, or the SOFT_BOUNCE_LIMIT-th soft bounce within SOFT_BOUNCE_WINDOW_SECONDS."""
    reason = REASONS.get(event.type)
    if event.type == EventType.BOUNCED:
        if event.bounce_type == BounceType.HARD:
            reason = SuppressionReason.BOUNCED
        elif _soft_bounces(event) >= settings.SOFT_BOUNCE_LIMIT:
            reason = SuppressionReason.SOFT_BOUNCED
    if reason is None:
        return None
    source = event.provider_kind
    if event.provider is not None:
        source = f"{event.provider_kind} '{event.provider.name}'"
    entry, _ = suppression_add(
        account=event.account, address=event.recipient, reason=reason, source=source, event=event
    )
    return entry


def _soft_bounces(event: DeliveryEvent) -> int:
    since = event.occurred_at - timedelta(seconds=settings.SOFT_BOUNCE_WINDOW_SECONDS)
    return DeliveryEvent.objects.filter(
        account=event.account,
        recipient=event.recipient,
        type=EventType.BOUNCED,
        bounce_type=BounceType.SOFT,
        occurred_at__gte=since,
    ).count()


# CSV ---------------------------------------------------------------------------------------


def suppressions_export(*, account) -> Iterable[str]:
    """The account's list as CSV lines (header first), streamed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    yield buffer.getvalue()
    rows = Suppression.objects.filter(account=account).order_by("address")
    for entry in rows.iterator(chunk_size=2000):
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(
            [
                entry.address,
                entry.reason,
                entry.source,
                entry.created_at.isoformat(),
                entry.expires_at.isoformat() if entry.expires_at else "",
            ]
        )
        yield buffer.getvalue()


def suppressions_import(*, account, text: str | bytes) -> dict[str, int]:
    """Add every address of a CSV (an `address` column, or one address per line); reason
    `manual` unless a `reason` column names one, expiry from an `expires_at` column (ISO 8601,
    blank: never), so an export imports back as it was. Bytes are UTF-8 (a BOM is allowed), at
    most MAX_IMPORT_BYTES. All or nothing: InvalidInput naming the first bad lines, nothing
    added. Returns {"rows": addresses read, "added": new on the list}."""
    if isinstance(text, bytes):
        text = _decoded(text)
    try:  # newline="": csv reads the line ends itself, so a lone \r is an end, not an error
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    except csv.Error as exc:
        raise InvalidInput(
            {"file": [f"not CSV: {exc}"]}, message=f"Nothing was imported: not CSV ({exc})."
        ) from None
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "address" in header:  # a header line names the columns, in any order
        rows, first_line = rows[1:], 2
    else:
        header, first_line = ["address"], 1
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidInput({"file": [f"at most {MAX_IMPORT_ROWS} rows per import."]})
    entries, problems = _read_rows(header, rows, first_line)
    if problems:
        shown = problems[:MAX_IMPORT_PROBLEMS]
        raise InvalidInput(
            {"file": shown},
            message=f"Nothing was imported: {len(problems)} line(s) can't be used; "
            f"the first: {'; '.join(shown[:3])}",
        )
    with transaction.atomic():
        added = _store_imported(account, entries)
        transaction.on_commit(lambda: listcache.bump(account.pk))
    logger.info("account %s: imported %d rows, %d added", account.pk, len(entries), added)
    return {"rows": len(entries), "added": added}


def _decoded(data: bytes) -> str:
    if len(data) > MAX_IMPORT_BYTES:
        raise MessageTooLarge(
            {"file": [f"The file is {len(data)} bytes; at most {MAX_IMPORT_BYTES} are allowed."]}
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput({"file": [f"The file is not UTF-8 text (byte {exc.start})."]}) from None


def _store_imported(account, entries: list[tuple[str, str, datetime | None]]) -> int:
    """What suppression_add does for each entry, a batch of addresses per query: add those not
    on the list, extend the expiry of those that are (_renews). Returns how many were added."""
    wanted = {bare(address): (reason, expires) for address, reason, expires in entries}
    addresses, added = list(wanted), 0
    for start in range(0, len(addresses), _IMPORT_BATCH):
        batch = addresses[start : start + _IMPORT_BATCH]
        found = Suppression.objects.filter(account=account, address__in=batch)
        existing = {entry.address: entry for entry in found}
        new = [
            Suppression(
                account=account,
                address=a,
                reason=wanted[a][0],
                source="import",
                expires_at=wanted[a][1],
            )
            for a in batch
            if a not in existing
        ]
        # A concurrent add of the same address keeps its entry instead of failing the import.
        Suppression.objects.bulk_create(new, ignore_conflicts=True)
        renewed = [e for e in existing.values() if _renews(e.expires_at, wanted[e.address][1])]
        for entry in renewed:
            entry.expires_at = wanted[entry.address][1]
        Suppression.objects.bulk_update(renewed, ["expires_at"])
        accountcache.changed(account.pk, accountcache.SUPPRESSIONS)  # bulk: no signals
        added += len(new)
    return added


def _read_rows(header: list[str], rows: list[list[str]], first_line: int) -> tuple[list, list[str]]:
    """(address, reason, expires_at) of each row with an address, and each bad line's problem
    (rows numbered from first_line)."""
    entries, problems = [], []
    for number, row in enumerate(rows, start=first_line):
        values = dict(zip(header, (cell.strip() for cell in row), strict=False))
        if not values.get("address"):
            continue
        try:
            entries.append(_entry(values))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    return entries, problems


def _entry(values: dict[str, str]) -> tuple[str, str, datetime | None]:
    """One row's (address, reason, expires_at); ValueError says what is wrong with it."""
    address, reason = values["address"], values.get("reason") or SuppressionReason.MANUAL
    if problem := check_address(address):
        raise ValueError(problem)
    if reason not in SuppressionReason.values:
        raise ValueError(f"reason must be one of {', '.join(sorted(SuppressionReason.values))}.")
    if not values.get("expires_at"):
        return address, reason, None
    try:
        expires = parse_datetime(values["expires_at"])
    except ValueError:
        expires = None
    if expires is None:
        raise ValueError("expires_at must be an ISO 8601 date and time.")
    return address, reason, _aware(expires)


def _aware(when: datetime) -> datetime:
    """A time given without an offset is UTC."""
    return timezone.make_aware(when, UTC) if timezone.is_naive(when) else when
