"""Request and response shapes of /api/v1/webhooks (pydantic, through django-ninja)."""

from datetime import datetime
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict

from mailer.vocabulary import WebhookEventType, WebhookStatus

_EVENTS_HELP = (
    f"Event types to send (empty: every type): {', '.join(WebhookEventType.values)}. "
    "An unknown type is a 422 that names it."
)
_URL_HELP = (
    "Where to POST events: https, no credentials, a public host (http and private hosts only "
    "where ALLOW_PRIVATE_PROVIDER_HOSTS is true)."
)


class WebhookIn(Schema):
    model_config = ConfigDict(extra="forbid")

    # Plain values: the service checks them and names each bad field.
    url: str = Field(max_length=4000, description=_URL_HELP, examples=["https://example.com/hook"])
    event_types: list[Any] = Field([], description=_EVENTS_HELP, examples=[["email.bounced"]])


class WebhookPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=4000, description=_URL_HELP)
    event_types: list[Any] | None = Field(None, description=_EVENTS_HELP)
    enabled: bool | None = Field(
        None,
        description="false pauses deliveries; true resumes them (also after the service "
        "disabled the endpoint) and sends the messages still pending.",
    )


class WebhookOut(Schema):
    id: int
    url: str
    event_types: list[str] = Field(description="Empty: every type.")
    enabled: bool
    disabled_reason: str = Field(description="Why it is disabled, when it is.")
    failing_since: datetime | None = Field(
        description="When its deliveries started failing without a success since; after 5 "
        "days of that it is disabled and the account told."
    )
    created_at: datetime


class WebhookWithSecretOut(WebhookOut):
    secret: str = Field(
        description="The signing secret (whsec_...), shown only in this answer: verify each "
        "request's webhook-signature with it (Standard Webhooks)."
    )


class WebhookList(Schema):
    count: int
    results: list[WebhookOut]


class WebhookSecretOut(Schema):
    id: int
    secret: str = Field(description="The new signing secret, shown only in this answer.")


class WebhookDeliveryOut(Schema):
    id: int
    webhook_id: str = Field(description="The webhook-id header: the same on every try.")
    event_type: WebhookEventType
    status: WebhookStatus
    tries: int
    last_status_code: int | None = Field(description="The endpoint's last HTTP status, if any.")
    last_error: str
    next_attempt_at: datetime | None = Field(description="When the next try is due, if pending.")
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryPage(Schema):
    count: int
    page: int
    page_size: int
    next: str | None
    previous: str | None
    results: list[WebhookDeliveryOut]
