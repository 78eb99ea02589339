"""Writes: sending email, API tokens and provider configs. Views, API and tasks call these."""

from .emails import (
    IdempotencyConflict,
    SendResult,
    email_create,
    email_deliver,
    email_send,
    failover_order,
)
from .providers import (
    breaker,
    candidate_for,
    provider_config_add,
    provider_config_change,
    provider_config_create,
    provider_config_delete,
    provider_config_update,
    provider_pool,
    provider_test_send,
)
from .tokens import token_authenticate, token_create, token_revoke

__all__ = [
    "IdempotencyConflict",
    "SendResult",
    "breaker",
    "candidate_for",
    "email_create",
    "email_deliver",
    "email_send",
    "failover_order",
    "provider_config_add",
    "provider_config_change",
    "provider_config_create",
    "provider_config_delete",
    "provider_config_update",
    "provider_pool",
    "provider_test_send",
    "token_authenticate",
    "token_create",
    "token_revoke",
]
