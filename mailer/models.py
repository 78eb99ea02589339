"""Email, DeliveryAttempt, ProviderConfig and ApiToken: what is stored, per account (a User)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from mailer import crypto
from mailer.providers import kind_choices
from mailer.vocabulary import (
    DeliveryState,
    EmailStatus,
    EventType,
    Outcome,
    SuppressionReason,
    WebhookStatus,
)


def new_webhook_token() -> str:
    return secrets.token_urlsafe(32)


# The largest id the database can hold: a larger one names no row, and SQLite can't even
# compare it (every lookup by an id from outside checks it first).
MAX_ID = 2**63 - 1


class ProviderConfig(models.Model):
    """One provider an account can send through. Failover order is ascending `priority`."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_configs"
    )
    kind = models.CharField(max_length=20, choices=kind_choices)
    name = models.CharField(max_length=100)
    priority = models.PositiveIntegerField(default=100)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    # MultiFernet token of a JSON object; see mailer.crypto. Never rendered or returned.
    secrets_encrypted = models.TextField(blank=True, default="")
    secret_names = models.JSONField(default=list, blank=True)
    # The unguessable part of this config's webhook URL (/webhooks/in/<token>/): who knows it can
    # post, but only a request the provider signed is believed (mailer.providers.<kind>.events).
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token)
    # Pacing (mailer.delivery.pacing), shared by every process through Redis: at most this many
    # a second (a sliding second) and a day (a rolling 24 h), in messages or, for a kind that
    # counts recipients (SES), recipients. Empty: no limit of ours.
    max_per_second = models.PositiveIntegerField(null=True, blank=True)
    max_per_day = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="provider_name_per_account"),
        ]
        indexes = [models.Index(fields=["account", "priority", "id"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def breaker_key(self) -> str:
        return f"provider:{self.pk}"

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"

    @property
    def version(self) -> tuple:
        """Changes whenever what a built provider depends on does (mailer.delivery.pool)."""
        return (self.updated_at, self.kind, self.secrets_encrypted)

    def decrypted_secrets(self) -> dict[str, Any]:
        return crypto.decrypt_json(self.secrets_encrypted)


class Email(models.Model):
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="emails"
    )
    from_email = models.CharField(max_length=320)
    to = models.JSONField(default=list)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    # [{filename, content_type, content (base64)}], kept so a queued email can be sent later.
    attachments = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=255, blank=True, help_text="RFC 5322 Message-ID")

    requested_provider = models.ForeignKey(
        ProviderConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_via = models.ForeignKey(
        ProviderConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kind of the provider that accepted it, kept when that provider config is deleted.
    sent_via_kind = models.CharField(max_length=20, blank=True, choices=kind_choices)
    provider_message_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=20, choices=EmailStatus.choices, default=EmailStatus.QUEUED
    )
    failure_reason = models.TextField(blank=True)
    possible_duplicate = models.BooleanField(default=False)
    # After hand-off (mailer.services.events): the latest meaningful state per recipient,
    # {address: {"state", "at", "provider"}}, and its summary (DeliveryState).
    recipient_states = models.JSONField(default=dict, blank=True)
    delivery = models.CharField(
        max_length=20, choices=DeliveryState.choices, default=DeliveryState.UNKNOWN
    )
    # Recipients left out before any provider was contacted: on the suppression list.
    suppressed = models.JSONField(default=list, blank=True)
    # After an ambiguous attempt: how many providers took the message (the one that accepted it,
    # and each ambiguous one whose events prove it took it), once an ambiguous attempt's provider
    # reported; None until then (DESIGN.md: sent once or twice, shown, not guessed).
    copies_sent = models.PositiveSmallIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    # SHA-256 of the request that used idempotency_key, to tell a replay from a different request.
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A scheduled send: not tried before this time (stored `scheduled` until the sweep queues
    # it); its retries' MAX_DELIVERY_AGE counts from here rather than from created_at.
    send_at = models.DateTimeField(null=True, blank=True)
    # A resend: the failed email this one sends again (mailer.services.schedule.email_resend).
    resent_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resends"
    )

    # Queue mode (mailer.services.queue). The row, not the broker, says what is left to do.
    tries = models.PositiveIntegerField(default=0, help_text="Delivery tries started")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a queued email is due for its next try"
    )
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last put on the broker; empty: it is not"
    )
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker claimed it; its lease runs from here"
    )
    # Set with claimed_at by whoever claims it: a web request in sync mode (a short lease, its
    # send is bounded by the web timeout) or a worker or the sweep (SENDING_LEASE_SECONDS).
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When the claim's lease ends; the sweep takes it back"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="email_account_newest"),
            models.Index(
                fields=["account", "status", "-created_at", "-id"],
                name="email_account_status_newest",
            ),
            models.Index(
                fields=["account", "delivery", "-created_at", "-id"],
                name="email_account_delivery_newest",
            ),
            # The sweep's two questions, each over only the few rows in that status.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="queued"),
                name="email_queued_due",
            ),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="scheduled"),
                name="email_scheduled_due",
            ),
            models.Index(
                fields=["claimed_at"], condition=Q(status="sending"), name="email_sending_lease"
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="sending"),
                name="email_sending_lease_end",
            ),
            # A provider's event names its message id (mailer.services.events): found without
            # walking the account's emails.
            models.Index(
                fields=["account", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="email_provider_message",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="email_idempotency_key_per_account",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject!r} to {', '.join(self.to)} ({self.status})"

    @property
    def recipient_count(self) -> int:
        return len(self.to) + len(self.cc) + len(self.bcc)

    @property
    def starts_at(self):
        """When its delivery began to be due: MAX_DELIVERY_AGE counts from here."""
        return self.send_at or self.created_at


class DeliveryAttempt(models.Model):
    Outcome = Outcome

    email = models.ForeignKey(Email, on_delete=models.CASCADE, related_name="attempts")
    provider = models.ForeignKey(
        ProviderConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts"
    )
    provider_kind = models.CharField(max_length=20, choices=kind_choices)
    provider_name = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    # Which delivery try of the email it belongs to (queue mode retries; sync mode has one).
    try_number = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            models.Index(fields=["provider", "started_at"]),
            # An event for a message only an earlier attempt had (mailer.services.events).
            models.Index(
                fields=["provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="attempt_provider_message",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_name}: {self.outcome}"


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 digest is stored; the raw token is shown once."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class DeliveryEvent(models.Model):
    """What a provider reported after hand-off, for one recipient (mailer.providers.events)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delivery_events"
    )
    provider = models.ForeignKey(
        ProviderConfig, null=True, on_delete=models.SET_NULL, related_name="events"
    )
    provider_kind = models.CharField(max_length=20, choices=kind_choices)
    # None: a well-signed event for no email of this account (kept, logged: unmatched).
    email = models.ForeignKey(Email, null=True, on_delete=models.CASCADE, related_name="events")
    attempt = models.ForeignKey(
        DeliveryAttempt, null=True, on_delete=models.SET_NULL, related_name="events"
    )
    type = models.CharField(max_length=20, choices=EventType.choices)
    bounce_type = models.CharField(max_length=10, blank=True)
    recipient = models.CharField(max_length=320)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    provider_event_id = models.CharField(max_length=255)
    provider_message_id = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            # A provider's retry of the same event is stored once.
            models.UniqueConstraint(
                fields=["provider", "provider_event_id"], name="event_once_per_provider"
            ),
        ]
        indexes = [
            models.Index(fields=["email", "occurred_at"]),
            models.Index(fields=["account", "-received_at"]),
            # The health page's rates: per provider over a time range (mailer.selectors.stats).
            models.Index(fields=["provider", "occurred_at"], name="event_provider_occurred"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.recipient} ({self.provider_kind})"


class Suppression(models.Model):
    """An address no provider is asked to send to for this account (DESIGN.md, Suppression)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suppressions"
    )
    address = models.CharField(max_length=320, help_text="Lower-cased")
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    source = models.CharField(max_length=120, blank=True, help_text="The provider, or who added it")
    event = models.ForeignKey(DeliveryEvent, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "address"], name="suppression_per_account"),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"


class WebhookEndpoint(models.Model):
    """Where an account wants to hear about its mail (README: Webhooks out)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.CharField(max_length=2000)
    # WebhookEventType values; empty: every type.
    event_types = models.JSONField(default=list, blank=True)
    # MultiFernet token of {"secret": "whsec_..."} (mailer.crypto); shown once, never again.
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # When its deliveries started failing without a success since; None while they succeed.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url

    def signing_secret(self) -> str:
        return crypto.decrypt_json(self.secret_encrypted)["secret"]

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookMessage(models.Model):
    """One event for one endpoint: the outbox row. The row, not the broker, says what is left
    to do (mailer.services.webhooks_out); `msg_id` is the `webhook-id` of every try."""

    # No database constraint: a message stored by a send while its endpoint is being deleted
    # must not fail that send's transaction. The delivery drops such an orphan.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="messages", db_constraint=False
    )
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    msg_id = models.CharField(max_length=40, unique=True)
    status = models.CharField(
        max_length=10, choices=WebhookStatus.choices, default=WebhookStatus.PENDING
    )
    tries = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Queue mode: when it was last put on the broker (None: it is not), as for emails.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # The claim of one try: nobody else takes the row until its lease ends.
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep's question, over the pending rows only.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_pending_due",
            ),
            models.Index(fields=["endpoint", "-created_at", "-id"], name="webhook_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.msg_id} {self.event_type} ({self.status})"


class EmailTemplate(models.Model):
    """A stored email an account sends with variables: a Jinja2 subject, text and HTML, each
    compiled when saved and rendered in a bounded sandbox (mailer/templating)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_templates"
    )
    # A slug ([a-z0-9][a-z0-9_.-]{0,99}): how the API, the pages and a send name it.
    name = models.CharField(max_length=100)
    subject = models.CharField(max_length=2000)
    text = models.TextField(blank=True, default="")
    html = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="email_template_per_account"),
        ]

    def __str__(self) -> str:
        return self.name


class EmailBatch(models.Model):
    """A batch send (POST /api/v1/emails/batch) made with an Idempotency-Key: what the key stands
    for and what the batch stored, so that a repeat answers it again instead of storing and
    sending anew. Batches without a key leave no row: their emails are the record."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_batches"
    )
    idempotency_key = models.CharField(max_length=255)
    # SHA-256 over the items' own fingerprints, to tell a replay from a different batch.
    request_fingerprint = models.CharField(max_length=64)
    # One entry per item, in the order given: {"id": email id} or {"problem": {...}}.
    items = models.JSONField(default=list)
    # Sync mode: set once every email was tried (or handed to the sweep); until then a repeat
    # is told the batch is still in flight. Queue mode sets it at once.
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"], name="email_batch_idempotency_key"
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.idempotency_key} ({len(self.items)} items)"
