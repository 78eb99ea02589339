"""The service's words for states, in one place: what an attempt ended in, where an email is,
what a circuit is doing. Enums of strings (equal to their values), so the error classes, model
choices, API schemas, selectors, pages and the bench all say the same thing."""

from __future__ import annotations

from django.db.models import TextChoices


class Outcome(TextChoices):
    """How one attempt through one provider ended (DESIGN.md, "Failover")."""

    SENT = "sent", "Sent"
    REJECTED = "rejected", "Rejected"
    PROVIDER_ERROR = "provider_error", "Provider error"
    AMBIGUOUS = "ambiguous", "Ambiguous"
    SKIPPED = "skipped", "Skipped (circuit open)"


class EmailStatus(TextChoices):
    """Where an email is in its hand-off to a provider."""

    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class CircuitState(TextChoices):
    """A provider's circuit breaker; UNKNOWN while the cache holding it is unreachable."""

    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half-open", "Half-open"
    UNKNOWN = "unknown", "Unknown"
