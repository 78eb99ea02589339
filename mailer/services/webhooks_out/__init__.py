"""Webhooks out: the customer's app hears about its mail (README: Webhooks out). Endpoints and
their secrets (endpoints), the outbox and webhooks_emit (outbox), where events come from
(sources, which also receives the breaker's signals), and delivery with the sweep's part."""

from .delivery import (
    DISABLE_AFTER,
    RETRY_SCHEDULE,
    TryResult,
    webhook_message_claim,
    webhook_message_finish,
    webhook_message_process,
    webhook_post,
    webhooks_sweep,
)
from .endpoints import (
    MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT,
    WebhookEndpointDisabled,
    WebhookLimitReached,
    WebhookSettingsError,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate,
    webhook_endpoint_update,
    webhook_message_retry,
)
from .outbox import subscribed_endpoints, webhooks_emit
from .sources import webhooks_delivery_event, webhooks_email_finished

__all__ = [
    "DISABLE_AFTER",
    "MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT",
    "RETRY_SCHEDULE",
    "TryResult",
    "WebhookEndpointDisabled",
    "WebhookLimitReached",
    "WebhookSettingsError",
    "subscribed_endpoints",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_rotate",
    "webhook_endpoint_update",
    "webhook_message_claim",
    "webhook_message_finish",
    "webhook_message_process",
    "webhook_message_retry",
    "webhook_post",
    "webhooks_delivery_event",
    "webhooks_email_finished",
    "webhooks_emit",
    "webhooks_sweep",
]
