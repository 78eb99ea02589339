"""/api/v1/emails: send, list (cached), detail."""

import hashlib
import json

from django.conf import settings
from django.http import Http404, HttpResponse
from ninja import Field as NinjaField
from ninja import Header, Query, Router, Schema, Status

from mailer import selectors
from mailer.models import Email, EmailStatus
from mailer.services import IdempotencyConflict, email_send
from mailer.validation import (
    Attachment,
    InvalidEmail,
    OutgoingEmail,
    decode_base64,
    invalid_text,
    validate,
)

from .problems import problem
from .schemas import DbId, EmailIn, EmailOut, EmailPage, EmailStatusName, Problem

router = Router(tags=["emails"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 413: Problem, 415: Problem,
          422: Problem, 429: Problem}  # fmt: skip


def _outgoing(payload: EmailIn) -> OutgoingEmail:
    """The email the payload asks for, validated: InvalidEmail names every bad field (attachment
    contents that are not base64 among them)."""
    attachments, errors = [], {}
    decode = len(payload.attachments) <= settings.MAX_ATTACHMENTS  # else refused by count
    for index, item in enumerate(payload.attachments):
        content = b""
        if decode:
            try:
                content = decode_base64(item.content)
            except ValueError as exc:
                errors.setdefault(f"attachments[{index}].content", []).append(str(exc))
        attachments.append(Attachment(item.filename, item.content_type, content))
    outgoing = OutgoingEmail(
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
    try:
        validate(outgoing)
    except InvalidEmail as exc:
        if not errors:
            raise
        if exc.status == 400:  # field errors: name them with the attachments' (not a 413)
            errors = {**exc.errors, **errors}
    if errors:
        raise InvalidEmail(errors)
    return outgoing


def _fingerprint(payload: EmailIn) -> str:
    canonical = json.dumps(payload.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _email_response(email: Email) -> Status:
    status = (
        502
        if email.status == EmailStatus.FAILED
        else (201 if email.status == EmailStatus.SENT else 202)
    )
    return Status(status, selectors.email_detail(email))


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
    key = (idempotency_key or "").strip()
    if len(key) > 255:
        return problem(
            422,
            "Idempotency-Key must be at most 255 characters.",
            errors=[{"field": "Idempotency-Key", "message": "too long"}],
        )
    if found := invalid_text(key):
        return problem(
            422,
            f"Idempotency-Key can't contain {found}.",
            errors=[{"field": "Idempotency-Key", "message": f"contains {found}"}],
        )
    # Validated before anything else reads it (the provider lookup, the fingerprint, storage).
    outgoing = _outgoing(payload)
    requested = None
    if payload.provider not in (None, ""):
        requested = selectors.provider_resolve(account=request.account, ref=payload.provider)
        if requested is None:
            choices = selectors.provider_choices(account=request.account)
            return problem(
                422,
                f"Unknown or disabled provider {payload.provider!r}; choose one "
                f"of: {', '.join(choices) or 'none configured'}.",
                errors=[{"field": "provider", "message": "unknown provider"}],
            )
    try:
        result = email_send(
            account=request.account,
            outgoing=outgoing,
            requested_provider=requested,
            idempotency_key=key,
            fingerprint=_fingerprint(payload) if key else "",
        )
    except IdempotencyConflict as exc:
        return problem(exc.status, exc.message, email_id=exc.email.pk)
    email = selectors.email_get(account=request.account, email_id=result.email.pk)
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    if result.email.status == EmailStatus.QUEUED:
        # Queue mode: accepted. A worker may already be at it; the body shows where it is.
        return Status(202, selectors.email_detail(email))
    return _email_response(email)


class ListFilters(Schema):
    page: int = NinjaField(1, ge=1, le=10_000_000)
    page_size: int = NinjaField(10, ge=1, le=100)
    status: EmailStatusName | None = None
    provider: DbId | None = NinjaField(None, description="Only emails sent via this provider id")


def _page_url(request, page: int) -> str:
    query = request.GET.copy()
    query["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


@router.get(
    "/emails", response={200: EmailPage, **ERRORS}, summary="List sent emails", by_alias=True
)
def list_emails(request, filters: Query[ListFilters]):
    """The account's emails, newest first, `page_size` (at most 100) a page."""
    data = selectors.email_list(
        account_id=request.account.pk,
        page=filters.page,
        page_size=filters.page_size,
        status=filters.status,
        provider_id=filters.provider,
    )
    pages = max(1, -(-data["count"] // data["page_size"]))
    return {
        **data,
        "next": _page_url(request, filters.page + 1) if filters.page < pages else None,
        "previous": _page_url(request, filters.page - 1) if filters.page > 1 else None,
    }


@router.get(
    "/emails/{email_id}", response={200: EmailOut, **ERRORS}, summary="One email", by_alias=True
)
def get_email(request, email_id: DbId):
    """One email with every delivery attempt."""
    try:
        email = selectors.email_get(account=request.account, email_id=email_id)
    except Email.DoesNotExist:
        raise Http404 from None
    return selectors.email_detail(email)
