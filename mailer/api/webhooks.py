"""/api/v1/webhooks: the account's webhook endpoints (the signing secret shown once), their
recent deliveries, and sending one again."""

from django.http import HttpResponse
from ninja import Field, Query, Router, Schema, Status

from mailer.selectors.webhooks import (
    webhook_endpoint_detail,
    webhook_endpoint_get,
    webhook_endpoint_list,
    webhook_message_detail,
    webhook_message_get,
    webhook_message_page,
)
from mailer.services.webhooks_out import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate,
    webhook_endpoint_update,
    webhook_message_retry,
)

from .paging import page_answer
from .schemas import DbId, Problem
from .webhook_schemas import (
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    WebhookSecretOut,
    WebhookWithSecretOut,
)

router = Router(tags=["webhooks"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 415: Problem, 422: Problem,
          429: Problem}  # fmt: skip


def _endpoint(request, webhook_id: int):
    return webhook_endpoint_get(account=request.account, endpoint_id=webhook_id)


@router.get("/webhooks", response={200: WebhookList, **ERRORS}, summary="List webhook endpoints")
def list_webhooks(request):
    """The account's endpoints, oldest first; never their secrets."""
    endpoints = webhook_endpoint_list(account=request.account)
    return {"count": len(endpoints), "results": [webhook_endpoint_detail(e) for e in endpoints]}


@router.post(
    "/webhooks", response={201: WebhookWithSecretOut, **ERRORS}, summary="Add a webhook endpoint"
)
def create_webhook(request, response: HttpResponse, payload: WebhookIn):
    """Add an endpoint. The answer carries its signing `secret`, this once: keep it to verify
    each request (README: Webhooks out). 422 names each bad field; 409 past the limit."""
    endpoint, secret = webhook_endpoint_create(account=request.account, **payload.model_dump())
    response["Location"] = request.build_absolute_uri(f"{request.path.rstrip('/')}/{endpoint.pk}")
    return Status(201, webhook_endpoint_detail(endpoint) | {"secret": secret})


@router.get(
    "/webhooks/{webhook_id}", response={200: WebhookOut, **ERRORS}, summary="One webhook endpoint"
)
def get_webhook(request, webhook_id: DbId):
    return webhook_endpoint_detail(_endpoint(request, webhook_id))


@router.patch(
    "/webhooks/{webhook_id}",
    response={200: WebhookOut, **ERRORS},
    summary="Change a webhook endpoint",
)
def update_webhook(request, webhook_id: DbId, payload: WebhookPatch):
    """Change the fields given: `url`, `event_types` (replaced), `enabled`."""
    changes = {k: v for k, v in payload.model_dump(exclude_unset=True).items() if v is not None}
    endpoint = webhook_endpoint_update(endpoint=_endpoint(request, webhook_id), **changes)
    return webhook_endpoint_detail(endpoint)


@router.delete(
    "/webhooks/{webhook_id}", response={204: None, **ERRORS}, summary="Remove a webhook endpoint"
)
def delete_webhook(request, webhook_id: DbId):
    """Remove the endpoint and its messages: nothing more is sent to it."""
    webhook_endpoint_delete(endpoint=_endpoint(request, webhook_id))
    return Status(204, None)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response={200: WebhookSecretOut, **ERRORS},
    summary="Give a webhook endpoint a new secret",
)
def rotate_webhook_secret(request, webhook_id: DbId):
    """A new signing secret, shown in this answer only. The old one signs nothing from now on,
    retries of earlier messages included."""
    endpoint = _endpoint(request, webhook_id)
    return {"id": endpoint.pk, "secret": webhook_endpoint_rotate(endpoint=endpoint)}


class DeliveryFilters(Schema):
    page: int = Field(1, ge=1, le=10_000_000)
    page_size: int = Field(10, ge=1, le=100)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response={200: WebhookDeliveryPage, **ERRORS},
    summary="Recent deliveries to a webhook endpoint",
)
def list_deliveries(request, webhook_id: DbId, filters: Query[DeliveryFilters]):
    """The endpoint's messages, newest first: event type, status, tries, its last answer."""
    endpoint = _endpoint(request, webhook_id)
    page = webhook_message_page(endpoint=endpoint, page=filters.page, page_size=filters.page_size)
    return page_answer(request, page)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery}/retry",
    response={202: WebhookDeliveryOut, **ERRORS},
    summary="Send a delivery again",
)
def retry_delivery(request, webhook_id: DbId, delivery: str):
    """One more try now (by the next sweep in sync mode), with the same webhook-id; `delivery`
    is its id or its webhook-id. 409 while the endpoint is disabled."""
    message = webhook_message_get(endpoint=_endpoint(request, webhook_id), ref=delivery)
    return Status(202, webhook_message_detail(webhook_message_retry(message=message)))
