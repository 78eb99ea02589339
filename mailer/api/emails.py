"""/api/v1/emails: send, list (cached), detail."""

from django.conf import settings
from django.http import HttpResponse
from ninja import Field as NinjaField
from ninja import Header, Query, Router, Schema, Status

from mailer import selectors
from mailer.errors import InvalidInput
from mailer.models import EmailStatus, ProviderConfig
from mailer.send_request import outgoing_email, request_fingerprint
from mailer.services import email_send
from mailer.validation import Attachment, OutgoingEmail, decode_base64, invalid_text
from mailer.vocabulary import DeliveryState

from .paging import page_answer
from .schemas import DbId, EmailIn, EmailOut, EmailPage, Problem

router = Router(tags=["emails"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 413: Problem, 415: Problem,
          422: Problem, 429: Problem}  # fmt: skip


def _outgoing(payload: EmailIn) -> OutgoingEmail:
    """The email the payload asks for, validated: InvalidEmail names every bad field (attachment
    contents that are not base64 among them)."""
    attachments, problems = [], {}
    decode = len(payload.attachments) <= settings.MAX_ATTACHMENTS  # else refused by count
    for index, item in enumerate(payload.attachments):
        content = b""
        if decode:
            try:
                content = decode_base64(item.content)
            except ValueError as exc:
                problems.setdefault(f"attachments[{index}].content", []).append(str(exc))
        attachments.append(Attachment(item.filename, item.content_type, content))
    return outgoing_email(
        problems=problems,
        from_email=payload.from_,
        to=payload.to,
        cc=payload.cc,
        bcc=payload.bcc,
        reply_to=payload.reply_to,
        subject=payload.subject,
        text=payload.text,
        html=payload.html,
        headers=payload.headers,
        attachments=attachments,
        metadata=payload.metadata,
    )


def _idempotency_key(header: str | None) -> str:
    key = (header or "").strip()
    if len(key) > 255:
        raise InvalidInput(
            {"Idempotency-Key": ["too long"]},
            message="Idempotency-Key must be at most 255 characters.",
        )
    if found := invalid_text(key):
        raise InvalidInput(
            {"Idempotency-Key": [f"contains {found}"]},
            message=f"Idempotency-Key can't contain {found}.",
        )
    return key


def _requested_provider(account, ref: int | str | None) -> ProviderConfig | None:
    if ref in (None, ""):
        return None
    requested = selectors.provider_resolve(account=account, ref=ref)
    if requested is None:
        choices = selectors.provider_choices(account=account)
        raise InvalidInput(
            {"provider": ["unknown provider"]},
            message=f"Unknown or disabled provider {ref!r}; choose one of: "
            f"{', '.join(choices) or 'none configured'}.",
        )
    return requested


# A sent email is created (201), a failed one a bad gateway (502), any other accepted (202).
STATUS_OF = {EmailStatus.SENT: 201, EmailStatus.FAILED: 502}


@router.post(
    "/emails",
    response={201: EmailOut, 202: EmailOut, 502: EmailOut, **ERRORS},
    summary="Send an email",
    by_alias=True,
)
def send_email(
    request,
    response: HttpResponse,
    payload: EmailIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
):
    """Send one email through the account's providers with failover.

    201: a provider accepted it. 502: none did; `failure_reason` and `attempts` say why.
    202 (queue mode): stored as `queued`; a worker delivers it, retrying with backoff, and the
    email's detail shows it move through `sending` to `sent` or `failed`.
    Repeating a request with the same `Idempotency-Key` (within 24 hours) returns the first
    answer without sending again.
    """
    key = _idempotency_key(idempotency_key)
    # Validated before anything else reads it (the provider lookup, the fingerprint, storage).
    outgoing = _outgoing(payload)
    requested = _requested_provider(request.account, payload.provider)
    result = email_send(
        account=request.account,
        outgoing=outgoing,
        requested_provider=requested,
        idempotency_key=key,
        fingerprint=request_fingerprint(outgoing, requested) if key else "",
    )
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    email = selectors.email_get(account=request.account, email_id=result.email.pk)
    # Queued is accepted (202) even if a worker is already at it: the body shows where it is.
    queued = result.email.status == EmailStatus.QUEUED
    return Status(
        202 if queued else STATUS_OF.get(email.status, 202), selectors.email_detail(email)
    )


class ListFilters(Schema):
    page: int = NinjaField(1, ge=1, le=10_000_000)
    page_size: int = NinjaField(10, ge=1, le=100)
    status: EmailStatus | None = None
    provider: DbId | None = NinjaField(None, description="Only emails sent via this provider id")
    delivery: DeliveryState | None = NinjaField(
        None, description="Only emails whose delivery (from the providers' events) is this"
    )


@router.get(
    "/emails", response={200: EmailPage, **ERRORS}, summary="List sent emails", by_alias=True
)
def list_emails(request, filters: Query[ListFilters]):
    """The account's emails, newest first, `page_size` (at most 100) a page."""
    page = selectors.email_page(
        account_id=request.account.pk,
        page=filters.page,
        page_size=filters.page_size,
        status=filters.status,
        provider_id=filters.provider,
        delivery=filters.delivery,
    )
    return page_answer(request, page)


@router.get(
    "/emails/{email_id}", response={200: EmailOut, **ERRORS}, summary="One email", by_alias=True
)
def get_email(request, email_id: DbId):
    """One email with every delivery attempt."""
    return selectors.email_detail(selectors.email_get(account=request.account, email_id=email_id))
