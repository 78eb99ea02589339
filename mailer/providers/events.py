"""Delivery events from a provider's webhooks: the contract each kind's `events.py` fulfils.

A kind that posts webhooks names its Events class in its spec (`KindSpec.events`). For one
request to one provider config's webhook URL the class is built with that config's settings and
secrets and:

1. `verify(request)`: raises `Unauthenticated` unless the request is signed (or carries the
   credentials) as the provider documents, fresh (`MAX_AGE`), and not a replay (`seen`);
2. `parse(request)`: the request's events, normalized, or `Malformed`;
3. `handshake(request)`: what to answer instead, for a request that is part of setting the
   webhook up (SNS's SubscriptionConfirmation), or None.

Like transports, Events know nothing of the database: the replay memory is a callable they are
given, and matching an event to an email is the service's job (mailer.services.events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from mailer.vocabulary import BounceType, EventType

__all__ = ["BounceType", "EventType"]  # the vocabulary's, for each kind's events.py

# At most this many events in one request (Mandrill's and SendGrid's documented batch limits; the
# others post fewer): more is refused as Malformed, so one request's work is bounded.
MAX_EVENTS = 1000
# Strings kept in an event's detail (a diagnostic, a url) are cut to this many characters.
MAX_DETAIL = 500
# A signed request older than this is refused: the signature can't be replayed for longer.
MAX_AGE = timedelta(minutes=5)
# How long a signature's token or id is remembered against replays (past MAX_AGE, it is stale).
REPLAY_WINDOW = MAX_AGE * 2


class WebhookError(Exception):
    """A webhook request that is not taken; the message says why, for logs (never a secret)."""


class Unauthenticated(WebhookError):
    """Unsigned, forged, stale or replayed: nothing of it is believed or stored."""


class Malformed(WebhookError):
    """Signed, but not what the provider documents: nothing of it can be read."""


@dataclass(frozen=True)
class WebhookRequest:
    """One request as it arrived. `url` is the whole URL the provider posted to (Mandrill signs
    it); `headers` is case-insensitive (Django's request.headers)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, list[str]] = field(default_factory=dict)  # a form-encoded body, parsed


@dataclass(frozen=True)
class Event:
    """One provider event, normalized (DESIGN.md, "Email statuses and delivery events").

    `provider_event_id` is unique per provider (a repeated webhook is stored once); `email_id`
    is ours as the message carried it in the provider's metadata field, `provider_message_id`
    the fallback for matching. `detail` holds what the provider said: bounce type and code,
    diagnostic, clicked url, its own event name."""

    type: EventType
    recipient: str
    occurred_at: datetime
    provider_event_id: str
    provider_message_id: str = ""
    email_id: str = ""
    bounce_type: BounceType | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Handshake:
    """An answer to give instead of taking events (a subscription confirmed, say)."""

    status: int
    body: str


# seen(key) -> whether a request with this signature token was already taken. The service
# remembers an Events' `replay_keys` for REPLAY_WINDOW once its events are stored, not before:
# a request that failed on our side may be retried by the provider with the same token.
ReplayGuard = Callable[[str], bool]


class Events:
    """Base of each kind's webhook events. Built per request with the provider config's clean
    settings and decrypted secrets, a replay guard and a clock (tests move it). `fetch(url)`
    GETs a small document over the pinned client (SNS: its signing certificate)."""

    kind: ClassVar[str] = ""

    def __init__(
        self,
        *,
        settings: Mapping[str, Any],
        secrets: Mapping[str, Any],
        seen: ReplayGuard,
        now: Callable[[], datetime],
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.seen = seen
        self.now = now
        self.replay_keys: list[str] = []
        self.fetch = fetch

    def verify(self, request: WebhookRequest) -> None:
        raise NotImplementedError

    def parse(self, request: WebhookRequest) -> list[Event]:
        raise NotImplementedError

    def handshake(self, request: WebhookRequest) -> Handshake | None:
        return None

    # Helpers for subclasses ----------------------------------------------------------------

    def secret(self, name: str) -> str:
        """A secret the verification needs; Unauthenticated when the config has none (an
        unsigned webhook is never trusted)."""
        value = str(self.secrets.get(name) or "")
        if not value:
            raise Unauthenticated(
                f"{self.kind}: the provider's {name} is not set, so no webhook can be verified"
            )
        return value

    def check_fresh(self, at: datetime) -> None:
        """Unauthenticated when a signed timestamp is older than MAX_AGE (or far ahead)."""
        now = self.now()
        if at < now - MAX_AGE or at > now + MAX_AGE:
            stamp = at.isoformat()
            raise Unauthenticated(f"{self.kind}: the signed timestamp {stamp} is stale")

    def check_not_replayed(self, token: str) -> None:
        """Unauthenticated when a request signed with this token (nonce, message id) was
        taken already; otherwise the token is remembered once the events are stored."""
        key = f"{self.kind}:{token}"
        if self.seen(key):
            raise Unauthenticated(f"{self.kind}: this signature was already used (a replay)")
        self.replay_keys.append(key)
