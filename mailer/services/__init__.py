"""Writes: sending email, API tokens and provider configs. Views, API and tasks call these."""

from .batches import BatchEmail, batch_fingerprint, batch_limits, emails_batch_send
from .emails import (
    IdempotencyConflict,
    SendResult,
    email_create,
    email_deliver,
    email_finish,
    email_send,
    email_try,
    failover_order,
)
from .enqueue import email_enqueue, emails_enqueue
from .providers import (
    provider_config_create,
    provider_config_delete,
    provider_config_update,
    provider_test_send,
)
from .queue import (
    SweepReport,
    email_claim,
    email_process,
    email_release,
    emails_sweep,
    retry_delay,
)
from .templates import (
    template_create,
    template_delete,
    template_preview,
    template_render,
    template_update,
)
from .tokens import token_authenticate, token_create, token_revoke

# Imported here so that every process that delivers receives the breaker's signals.
from .webhooks_out import webhook_message_process, webhooks_emit, webhooks_sweep

__all__ = [
    "BatchEmail",
    "IdempotencyConflict",
    "SendResult",
    "SweepReport",
    "batch_fingerprint",
    "batch_limits",
    "email_claim",
    "email_create",
    "email_deliver",
    "email_enqueue",
    "email_finish",
    "email_process",
    "email_release",
    "email_send",
    "email_try",
    "emails_batch_send",
    "emails_enqueue",
    "emails_sweep",
    "failover_order",
    "provider_config_create",
    "provider_config_delete",
    "provider_config_update",
    "provider_test_send",
    "retry_delay",
    "template_create",
    "template_delete",
    "template_preview",
    "template_render",
    "template_update",
    "token_authenticate",
    "token_create",
    "token_revoke",
    "webhook_message_process",
    "webhooks_emit",
    "webhooks_sweep",
]
