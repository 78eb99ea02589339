"""Delivery events in: one provider config's webhook request, verified by its kind's Events
(mailer.providers.<kind>.events), stored once per provider event, matched to the exact email,
folded into per-recipient state, and fed to the suppression list."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from mailer import cacheguard, listcache
from mailer.errors import AppError, InvalidInput
from mailer.models import DeliveryAttempt, DeliveryEvent, Email, ProviderConfig, WebhookEndpoint
from mailer.providers import specs
from mailer.providers.base import ProviderError
from mailer.providers.events import (
    REPLAY_WINDOW,
    Event,
    Events,
    Handshake,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from mailer.providers.httpclient import fetch
from mailer.selectors import statements
from mailer.vocabulary import DeliveryState, EmailStatus, EventType, Outcome

from .suppressions import bare, suppression_from_event
from .webhooks_out import subscribed_endpoints, webhooks_delivery_event

logger = logging.getLogger("mailer.events")

# Per recipient, a later event replaces the state only if it means at least as much: an "opened"
# after "delivered" keeps "delivered"'s place in the summary, a bounce always counts.
RANK = {
    EventType.DEFERRED: 1,
    EventType.DELIVERED: 2,
    EventType.OPENED: 2,
    EventType.CLICKED: 2,
    EventType.UNSUBSCRIBED: 2,
    EventType.DROPPED: 3,
    EventType.BOUNCED: 3,
    EventType.COMPLAINED: 4,
}
FETCH_TIMEOUT = 5.0
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what new_webhook_token() makes


class UnknownWebhook(AppError):
    """No provider config has this webhook URL, or its kind posts no webhooks."""


class WebhookUnauthenticated(AppError):
    """The request is not one the provider signed (or it is stale, or a replay)."""


class VerificationUnavailable(AppError):
    """What verifying needs could not be had now (SNS's signing certificate did not download):
    the provider should retry later."""


@dataclass(frozen=True)
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    handshake: Handshake | None = None


def events_ingest(*, token: str, request: WebhookRequest) -> IngestResult:
    """Take one webhook request for the config whose webhook token is `token`.

    UnknownWebhook (no such config), WebhookUnauthenticated (not signed as the provider signs,
    stale, replayed: nothing stored) or InvalidInput (signed but unreadable) when it is refused.
    A well-signed event for no email of the account is stored unmatched and logged, so the
    provider stops retrying it."""
    config = None
    if _TOKEN.fullmatch(token):  # never a query with a NUL or an endless string in it
        # The token is unique: no ordering, and no join (only account_id is read).
        build = lambda: ProviderConfig.objects.filter(webhook_token=token).order_by()  # noqa: E731
        found = statements.instances("webhook-config", ProviderConfig, build, [token], limit=1)
        config = found[0] if found else None
    spec = specs().get(config.kind) if config is not None else None
    if config is None or spec is None or not spec.events:
        raise UnknownWebhook("No provider of this service has this webhook URL.")
    events = _events_for(config, spec.events)
    try:
        events.verify(request)
        handshake = events.handshake(request)
        parsed = [] if handshake else events.parse(request)
    except Unauthenticated as exc:
        logger.warning("webhook for provider %s refused: %s", config.pk, exc)
        raise WebhookUnauthenticated(str(exc)) from None
    except Malformed as exc:
        logger.warning("webhook for provider %s unreadable: %s", config.pk, exc)
        raise InvalidInput({"body": [str(exc)]}) from None
    except ProviderError as exc:  # a document verifying needs did not download: ours to retry
        logger.warning("webhook for provider %s not verified: %s", config.pk, exc.message)
        raise VerificationUnavailable(
            f"The request could not be verified now: {exc.message}"
        ) from None
    result = _store(config, parsed)
    _remember(events.replay_keys)
    if handshake:
        return IngestResult(handshake=handshake)
    return result


def _events_for(config: ProviderConfig, path: str) -> Events:
    module, name = path.split(":")
    cls = getattr(import_module(module), name)

    def fetch_document(url: str) -> bytes:
        return fetch(
            url,
            label=f"{config.kind} webhook",
            timeout=FETCH_TIMEOUT,
            allow_private=settings.ALLOW_PRIVATE_PROVIDER_HOSTS,
        )

    return cls(
        settings=config.settings,
        secrets=config.decrypted_secrets(),
        seen=_seen,
        now=timezone.now,
        fetch=fetch_document,
    )


def _seen(key: str) -> bool:
    """Whether a signature token was taken already. With the cache away this can't be known:
    the request is taken (logged once per outage by cacheguard), and a repeated event is still
    stored once by its provider event id."""
    return cacheguard.call(
        "checking a webhook replay", lambda: cache.get(f"webhook-replay:{key}") is not None, False
    )


def _remember(keys: list[str]) -> None:
    if keys:
        seconds = REPLAY_WINDOW.total_seconds()
        values = {f"webhook-replay:{key}": 1 for key in keys}
        cacheguard.run("recording a webhook token", lambda: cache.set_many(values, seconds))


# Storing ------------------------------------------------------------------------------------


def _store(config: ProviderConfig, parsed: list[Event]) -> IngestResult:
    if not parsed:
        return IngestResult()
    emails = _matching_emails(config, parsed)
    # Read once for every event, and only when an event is for one of the account's emails
    # (an event for no email tells the account's endpoints nothing).
    endpoints = subscribed_endpoints(config.account_id) if emails else []
    stored = duplicates = unmatched = 0
    touched: set[int] = set()
    for event in parsed:
        email = emails.get(event.email_id) or emails.get(("message", event.provider_message_id))
        row = _insert(config, event, email, endpoints)
        if row is None:
            duplicates += 1
            continue
        stored += 1
        if email is None:
            unmatched += 1
            logger.info(
                "provider %s: %s event for no known email (message %s) kept unmatched",
                config.pk, event.type, event.provider_message_id[:80],
            )  # fmt: skip
        else:
            touched.add(email.pk)
        suppression_from_event(event=row)
    for email_id in touched:
        _fold(email_id)
    if touched:
        listcache.bump(config.account_id)
    return IngestResult(stored=stored, duplicates=duplicates, unmatched=unmatched)


def _matching_emails(config: ProviderConfig, parsed: list[Event]) -> dict:
    """The account's emails the events name: by our id first, the provider's message id else.
    Only this account's: another account's id in a metadata field matches nothing."""
    ids = {
        e.email_id
        for e in parsed
        if e.email_id.isascii() and e.email_id.isdigit() and len(e.email_id) < 19
    }
    message_ids = {e.provider_message_id for e in parsed if e.provider_message_id}
    found: dict = {}
    account = config.account_id
    if ids:
        for email in _emails_by_id(account, {int(i) for i in ids}):
            found[str(email.pk)] = email
    if message_ids:
        for email in _emails_by_message_id(account, message_ids):
            found[("message", email.provider_message_id)] = email
        # A message id only an earlier attempt had (a failed-over send): its email by id.
        missing = message_ids - {key[1] for key in found if isinstance(key, tuple)}
        via = _attempts_by_message_id(account, missing) if missing else {}
        if via:
            emails = {e.pk: e for e in _emails_by_id(account, set(via.values()))}
            for message_id, email_id in via.items():
                if email_id in emails:
                    found.setdefault(("message", message_id), emails[email_id])
    return found


# The matching queries, compiled once per shape (mailer.selectors.statements): building and
# compiling them was most of a webhook request, not running them. No ordering (the model's
# default would be compiled into each query for nothing).


def _emails_by_id(account_id: int, ids: set[int]) -> list[Email]:
    wanted = sorted(ids)
    build = lambda: Email.objects.filter(account_id=account_id, pk__in=wanted).order_by()  # noqa: E731
    return statements.instances(("emails-by-id", len(wanted)), Email, build, [account_id, *wanted])


def _emails_by_message_id(account_id: int, message_ids: set[str]) -> list[Email]:
    wanted = sorted(message_ids)
    build = lambda: by_message_id(Email.objects.filter(account_id=account_id).order_by(), wanted)  # noqa: E731
    key = ("emails-by-message-id", len(wanted))
    return statements.instances(key, Email, build, [account_id, "", *wanted])


def _attempts_by_message_id(account_id: int, message_ids: set[str]) -> dict[str, int]:
    """provider message id -> email id, of the account's attempts with these message ids."""
    wanted = sorted(message_ids)

    def build():
        attempts = by_message_id(DeliveryAttempt.objects.order_by(), wanted)
        attempts = attempts.filter(email__account_id=account_id)
        return attempts.values("provider_message_id", "email_id")

    key = ("attempts-by-message-id", len(wanted))
    found = statements.rows(key, build, ["", *wanted, account_id])
    return {row["provider_message_id"]: row["email_id"] for row in found}


def by_message_id(rows: QuerySet, message_ids: Collection[str]) -> QuerySet:
    """`rows` (emails or attempts) with one of these provider message ids, through the partial
    indexes on it (email_provider_message, attempt_provider_message): the query repeats their
    condition, which SQLite needs to see before it uses a partial index."""
    return rows.exclude(provider_message_id="").filter(provider_message_id__in=message_ids)


def _insert(
    config: ProviderConfig, event: Event, email: Email | None, endpoints: list[WebhookEndpoint]
) -> DeliveryEvent | None:
    """The stored event, or None when this provider's event id is stored already. Its webhook
    messages (email.delivered, ...) are stored with it, or neither is."""
    attempt = None
    if email is not None:
        attempt = (
            DeliveryAttempt.objects.filter(email=email, provider=config)
            .exclude(outcome=Outcome.SKIPPED)
            .order_by("-started_at", "-id")
            .first()
        )
    try:
        with transaction.atomic():
            row = DeliveryEvent.objects.create(
                account_id=config.account_id,
                provider=config,
                provider_kind=config.kind,
                email=email,
                attempt=attempt,
                type=event.type,
                bounce_type=event.bounce_type or "",
                recipient=event.recipient.strip().lower()[:320],
                occurred_at=event.occurred_at,
                provider_event_id=event.provider_event_id[:255],
                provider_message_id=event.provider_message_id[:255],
                detail=dict(event.detail),
            )
            if email is not None:
                webhooks_delivery_event(event=row, email=email, endpoints=endpoints)
            return row
    except IntegrityError:
        return None


def _fold(email_id: int) -> None:
    """Recompute the email's per-recipient states, summary and copies from its stored events:
    the same answer whatever order concurrent webhooks arrive in."""
    with transaction.atomic():
        email = Email.objects.select_for_update().get(pk=email_id)
        states: dict[str, dict] = {}
        for event in email.events.order_by("occurred_at", "id").select_related("provider"):
            current = states.get(event.recipient)
            if current is None or RANK[event.type] >= RANK[EventType(current["state"])]:
                states[event.recipient] = {
                    "state": event.type,
                    "at": event.occurred_at.isoformat(),
                    "provider": event.provider.name if event.provider else event.provider_kind,
                }
        email.recipient_states = states
        recipients = [bare(a) for a in (*email.to, *email.cc, *email.bcc)]
        email.delivery = summary(states, recipients)
        email.copies_sent = _copies(email)
        email.save(update_fields=["recipient_states", "delivery", "copies_sent"])


def summary(states: dict[str, dict], recipients: list[str]) -> str:
    """The email's delivery: `delivered` once every recipient was reached, `partially_delivered`
    while some were and others bounced or have not been reported yet, `bounced` when none was
    reached and one bounced or was dropped, `complained` when anyone complained."""
    found = {EventType(s["state"]) for s in states.values()}
    if not found:
        return DeliveryState.UNKNOWN
    if EventType.COMPLAINED in found:
        return DeliveryState.COMPLAINED
    reached = {EventType.DELIVERED, EventType.OPENED, EventType.CLICKED, EventType.UNSUBSCRIBED}
    reached_all = all(r in states and EventType(states[r]["state"]) in reached for r in recipients)
    if found <= reached and reached_all:
        return DeliveryState.DELIVERED
    if found & reached:
        return DeliveryState.PARTIALLY_DELIVERED
    if found & {EventType.BOUNCED, EventType.DROPPED}:
        return DeliveryState.BOUNCED
    return DeliveryState.UNKNOWN


def _copies(email: Email) -> int | None:
    """How many providers took this email, once a provider whose attempt was ambiguous reported
    any event of it (an event proves it took the message): the provider that accepted it, if
    any, and each such ambiguous one. None while no ambiguous provider has spoken (DESIGN.md:
    sent once or twice, shown, not guessed)."""
    if not email.possible_duplicate:
        return None
    ambiguous = set(
        email.attempts.filter(outcome=Outcome.AMBIGUOUS).values_list("provider_id", flat=True)
    )
    reported = set(email.events.values_list("provider_id", flat=True)) & ambiguous
    if not reported:
        return None
    accepted = {email.sent_via_id} if email.status == EmailStatus.SENT else set()
    return len(accepted | reported)
