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

    SCHEDULED = "scheduled", "Scheduled"  # waits for its send_at; the sweep queues it then
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"  # by request while scheduled or queued: never sent


class CircuitState(TextChoices):
    """A provider's circuit breaker; UNKNOWN while the cache holding it is unreachable."""

    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half-open", "Half-open"
    UNKNOWN = "unknown", "Unknown"


class EventType(TextChoices):
    """What a provider reported after hand-off, per recipient (mailer.providers.events)."""

    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    DROPPED = "dropped", "Dropped"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class BounceType(TextChoices):
    HARD = "hard", "Hard"  # permanent: the address does not exist or never accepts
    SOFT = "soft", "Soft"  # temporary: mailbox full, greylisted, too large


class DeliveryState(TextChoices):
    """An email's delivery summary over its recipients' latest states."""

    UNKNOWN = "unknown", "Unknown"  # no events (yet), or a provider that sends none (SMTP)
    DELIVERED = "delivered", "Delivered"
    PARTIALLY_DELIVERED = "partially_delivered", "Partially delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"


class SuppressionReason(TextChoices):
    BOUNCED = "bounced", "Hard bounce"
    SOFT_BOUNCED = "soft_bounced", "Repeated soft bounces"
    COMPLAINED = "complained", "Spam complaint"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    MANUAL = "manual", "Added by hand"


class WebhookEventType(TextChoices):
    """What an account's webhook endpoints can hear about (README: Webhooks out)."""

    EMAIL_SENT = "email.sent", "Email sent"
    EMAIL_FAILED = "email.failed", "Email failed"
    EMAIL_DELIVERED = "email.delivered", "Email delivered"
    EMAIL_BOUNCED = "email.bounced", "Email bounced"
    EMAIL_COMPLAINED = "email.complained", "Spam complaint"
    EMAIL_OPENED = "email.opened", "Email opened"
    EMAIL_CLICKED = "email.clicked", "Link clicked"
    EMAIL_FAILED_OVER = "email.failed_over", "Sent by a fallback provider"
    CIRCUIT_OPENED = "provider.circuit_opened", "Provider circuit opened"
    CIRCUIT_CLOSED = "provider.circuit_closed", "Provider circuit closed"


class WebhookStatus(TextChoices):
    """Where one webhook message is in its delivery to an endpoint."""

    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
