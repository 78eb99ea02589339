"""/api/v1/emails: send, list (cached), detail."""

import zlib
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpResponse
from ninja import Field as NinjaField
from ninja import Header, Query, Router, Schema, Status
from pydantic import ValidationError as PydanticValidationError
from pydantic import ValidationInfo, field_validator

from mailer import accountcache, listcache, selectors
from mailer.models import EmailStatus
from mailer.selectors import cursors
from mailer.selectors.email_lists import Encode, email_list_lookup
from mailer.services import SendResult, email_send
from mailer.services.schedule import email_cancel, email_resend
from mailer.vocabulary import DeliveryState

from . import rendering
from .auth import BearerToken
from .paging import page_answer
from .schemas import DbId, EmailIn, EmailOut, EmailPage, EmailSummaryOut, Problem
from .sending import (
    _outgoing,  # noqa: F401 (tests read an email as the API does)
    idempotency_key,
    send_request,
)

router = Router(tags=["emails"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 413: Problem, 415: Problem,
          422: Problem, 429: Problem}  # fmt: skip


# A sent email is created (201), a failed one a bad gateway (502), any other accepted (202).
STATUS_OF = {EmailStatus.SENT: 201, EmailStatus.FAILED: 502}


@router.post(
    "/emails",
    response={201: EmailOut, 202: EmailOut, 502: EmailOut, **ERRORS},
    summary="Send an email",
    by_alias=True,
    # What the send reads of the account is checked against its change stamps, read in the
    # rate limit's round trip (mailer.accountcache).
    auth=BearerToken(prefetch=lambda request, account_id: accountcache.Stamps(account_id)),
)
def send_email(
    request,
    response: HttpResponse,
    payload: EmailIn,
    idempotency_key_header: str | None = Header(None, alias="Idempotency-Key"),
):
    """Send one email through the account's providers with failover.

    201: a provider accepted it. 502: none did; `failure_reason` and `attempts` say why.
    202 (queue mode): stored as `queued`; a worker delivers it, retrying with backoff, and the
    email's detail shows it move through `sending` to `sent` or `failed`.
    202 with `send_at` in the future: stored `scheduled`, sent within one sweep interval after
    that time; `POST /emails/{id}/cancel` stops it until then.
    Repeating a request with the same `Idempotency-Key` (within 24 hours) returns the first
    answer without sending again.
    With `template` (and its `variables`) instead of subject/text/html, the account's template
    is rendered (HTML escaped, in a sandbox) and the email keeps the result; a missing variable
    is a 422 naming it.
    """
    key = idempotency_key(idempotency_key_header)
    send = send_request(request.account, payload)  # validated before anything else reads it
    result = email_send(
        account=request.account,
        outgoing=send.outgoing,
        requested_provider=send.requested,
        idempotency_key=key,
        fingerprint=send.fingerprint() if key else "",
        send_at=send.send_at,
        account_stamps=getattr(request, "prefetched", None),
    )
    return _send_answer(request, response, result)


def _send_answer(request, response: HttpResponse, result: SendResult) -> Status:
    """A send's answer: the email as this request left it (201 sent, 502 failed, 202 queued or
    scheduled), or, replayed for an Idempotency-Key, as it is stored now."""
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    if result.delivery is not None:  # delivered here: the answer is what this request wrote
        email = result.email
        detail = selectors.email_detail(email, attempts=result.attempts, events=(), resends=())
    else:  # replayed or queued: a worker may be at it, so read what is stored now
        email = selectors.email_get(account=request.account, email_id=result.email.pk)
        detail = selectors.email_detail(email)
    # Queued is accepted (202) even if a worker is already at it: the body shows where it is;
    # so is scheduled.
    waiting = result.email.status in (EmailStatus.QUEUED, EmailStatus.SCHEDULED)
    return Status(202 if waiting else STATUS_OF.get(email.status, 202), detail)


class ListFilters(Schema):
    page: int | None = NinjaField(
        None, ge=1, le=10_000_000, description="The page's number (default 1); not with cursor."
    )
    cursor: str | None = NinjaField(
        None,
        max_length=cursors.MAX_CURSOR_CHARS,
        description="Continue after the page whose `next_cursor` this is (empty: from the "
        "newest email); not with page.",
    )
    page_size: int = NinjaField(10, ge=1, le=100)
    status: EmailStatus | None = None
    provider: DbId | None = NinjaField(None, description="Only emails sent via this provider id")
    delivery: DeliveryState | None = NinjaField(
        None, description="Only emails whose delivery (from the providers' events) is this"
    )

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A cursor we gave out (checked strictly: its position is read again later), alone."""
        if value is None:
            return None
        if info.data.get("page") is not None:
            raise ValueError("Give either page or cursor, not both.")
        if value:
            cursors.decode(value)
        return value


def _list_query(account_id: int, filters: ListFilters) -> dict:
    """The selectors' arguments for these filters."""
    return {"account_id": account_id, "page": filters.page or 1, "page_size": filters.page_size,
            "status": filters.status, "provider_id": filters.provider,
            "delivery": filters.delivery, "cursor": filters.cursor,
            "encode": ROWS_JSON}  # fmt: skip


def _list_prefetch(request, account_id: int) -> listcache.Lookup | None:
    """The cache reads list_emails will need, for BearerToken to make in its rate limit's round
    trip (one round trip for a cached list); None for a query list_emails refuses (a 422)."""
    try:
        filters = ListFilters.model_validate(request.GET.dict())
    except PydanticValidationError:
        return None
    return email_list_lookup(**_list_query(account_id, filters))


@router.get(
    "/emails",
    response={200: EmailPage, **ERRORS},
    summary="List sent emails",
    by_alias=True,
    auth=BearerToken(prefetch=_list_prefetch),
)
def list_emails(request, filters: Query[ListFilters]):
    """The account's emails, newest first (by `created_at`, then `id`), `page_size` (at most
    100) a page. Two ways through them:

    - by number: `page` (default 1); `next` and `previous` link the neighbouring pages. Emails
      stored meanwhile shift the pages, and deep pages cost more (the emails before them are
      skipped one by one).
    - by cursor: pass any page's `next_cursor` as `cursor` (or `cursor=` empty to start from
      the newest) and follow `next`, which carries the following cursor; `page` and
      `previous` are null. Every page costs the same however deep, and emails stored during
      the walk never make it skip or repeat an email stored before. A cursor is opaque and
      stays valid; one this API did not give out is a 422.

    `count` is the number of matching emails; `count_exact` is false when it is not exact
    (past 10,000 matching emails it is counted once and reused for up to a minute).
    """
    query = _list_query(request.account.pk, filters)
    fills: list[Callable[[], object]] = []  # a page read from the database: cached once sent
    page = selectors.email_page(
        **query, prefetched=getattr(request, "prefetched", None), defer=fills.append
    )
    return _page_response(page_answer(request, page), after=fills)


# A list row's keys as EmailPage renders them (the selectors' rows carry more, e.g. text_preview).
_SUMMARY_KEYS = tuple(field.alias or name for name, field in EmailSummaryOut.model_fields.items())


def _rows_json(rows: list[dict]) -> bytes:
    """A page's rows as django-ninja renders EmailPage's results, without validating them
    again: they are built by the selectors from stored rows. tests/api/test_emails_cursor.py
    holds this rendering to the validated one."""
    return rendering.dumps([{key: row.get(key) for key in _SUMMARY_KEYS} for row in rows])


# The list's pages are cached as their rows' JSON (mailer.selectors.email_lists.Encode): a
# cached page is answered without rendering ten rows again. Named by the keys it renders, so pages
# cached by a release with other fields are never served by this one.
ROWS_JSON = Encode(f"orjson-{zlib.crc32(' '.join(_SUMMARY_KEYS).encode()):08x}", _rows_json)


class _ThenResponse(HttpResponse):
    """An answer that runs `after` once the server has sent it (WSGI's close): work the client
    need not wait for, such as caching the page it was just answered."""

    def __init__(self, *args: Any, after: Sequence[Callable[[], object]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._after = list(after)

    def close(self) -> None:
        after, self._after = self._after, []
        try:
            for task in after:
                task()
        finally:
            super().close()


def _page_response(answer: dict, *, after: Sequence[Callable[[], object]] = ()) -> HttpResponse:
    """The answer, its results already JSON (ROWS_JSON), rendered around them; `after` run
    once it is sent."""
    head = rendering.dumps(answer | {"results": []})
    if not head.endswith(b"[]}"):  # results is the answer's last key (page_answer)
        raise AssertionError("the page answer must end with its results")
    from mailer.api import api  # the API this router belongs to (it imports this module)

    body = b"".join((head[:-3], answer["results"], b"}"))
    return _ThenResponse(body, status=200, content_type=api.get_content_type(), after=after)


@router.get(
    "/emails/{email_id}", response={200: EmailOut, **ERRORS}, summary="One email", by_alias=True
)
def get_email(request, email_id: DbId):
    """One email with every delivery attempt."""
    return selectors.email_detail(selectors.email_get(account=request.account, email_id=email_id))


@router.post(
    "/emails/{email_id}/cancel",
    response={200: EmailOut, **ERRORS},
    summary="Cancel a scheduled or queued email",
    by_alias=True,
)
def cancel_email(request, email_id: DbId):
    """Cancel an email that is `scheduled` or `queued`: it becomes `canceled` and no provider
    is ever asked to send it. 409 once its delivery has started (`sending`) or it is done
    (`sent`, `failed`, `canceled`)."""
    email_cancel(account=request.account, email_id=email_id)
    return selectors.email_detail(selectors.email_get(account=request.account, email_id=email_id))


@router.post(
    "/emails/{email_id}/resend",
    response={201: EmailOut, 202: EmailOut, 502: EmailOut, **ERRORS},
    summary="Send a failed email again",
    by_alias=True,
)
def resend_email(
    request,
    response: HttpResponse,
    email_id: DbId,
    idempotency_key_header: str | None = Header(None, alias="Idempotency-Key"),
):
    """Send a `failed` email again as a new email with the same content, recipients and
    requested provider; the new one's `resent_from` is the original's id, and the original
    lists it in `resends`. Answers as a send does (201 sent, 502 failed again, 202 queued).
    409 for an email that did not fail. With an `Idempotency-Key`, a repeat answers the same
    resend instead of sending another."""
    key = idempotency_key(idempotency_key_header)
    result = email_resend(account=request.account, email_id=email_id, idempotency_key=key)
    return _send_answer(request, response, result)
