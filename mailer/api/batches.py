"""/api/v1/emails/batch: many emails in one request, each read and refused as a single send."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from ninja import Header, Router, Schema, Status
from pydantic import ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from mailer.errors import AppError, nearest
from mailer.services import BatchEmail, batch_fingerprint, batch_limits, emails_batch_send
from mailer.vocabulary import EmailStatus

from .problems import STATUSES, TITLES, _field
from .schemas import EmailIn, Problem
from .sending import idempotency_key, send_request

router = Router(tags=["emails"])

ERRORS = {400: Problem, 401: Problem, 409: Problem, 413: Problem, 415: Problem, 422: Problem,
          429: Problem}  # fmt: skip


class BatchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    emails: list[dict[str, Any]] = Field(
        min_length=1,
        description="At most BATCH_MAX_EMAILS (500; BATCH_SYNC_MAX_EMAILS, 50, in sync mode). "
        "Each is the body of a single send (POST /api/v1/emails), checked on its own.",
    )


class BatchItemOut(Schema):
    index: int = Field(description="The item's place in `emails`, from 0.")
    id: int | None = Field(None, description="The stored email's id (absent: refused).")
    status: EmailStatus | None = Field(None, description="The stored email's status now.")
    failure_reason: str | None = Field(None, description="Why it failed or is still queued.")
    suppressed: list[str] | None = Field(
        None, description="Recipients left out: on the account's suppression list."
    )
    problem: Problem | None = Field(
        None,
        description="Why the item was refused (nothing stored; the problem a single send of "
        "it would answer), or, with `id` and status `failed`, that every recipient is "
        "suppressed (stored failed, no provider contacted).",
    )


class BatchOut(Schema):
    stored: int = Field(description="Emails stored (items with an `id`).")
    refused: int = Field(description="Items refused (a `problem` and no `id`).")
    results: list[BatchItemOut] = Field(description="One per item, in the order given.")


def _problem(status: int, detail: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, "errors": errors or None}  # fmt: skip


def _read_item(account, raw: dict[str, Any]) -> tuple[BatchEmail | dict[str, Any], str]:
    """(the item to store, or the problem a single send of it would answer; its fingerprint)."""
    try:
        payload = EmailIn.model_validate(raw)
        send = send_request(account, payload)
    except PydanticValidationError as exc:
        errors = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        problem = _problem(422, f"Invalid fields: {fields}.", errors)
    except AppError as exc:
        errors = [{"field": field, "message": message}
                  for field, messages in exc.errors.items() for message in messages]  # fmt: skip
        problem = _problem(nearest(STATUSES, exc), str(exc), errors)
    else:
        return BatchEmail(send.outgoing, send.requested, send.send_at), send.fingerprint()
    text = json.dumps(raw, sort_keys=True, default=str)
    return problem, "refused:" + hashlib.sha256(text.encode()).hexdigest()


def _item_out(result: dict[str, Any]) -> dict[str, Any]:
    """A result as BatchItemOut shows it: empty fields left out; every recipient suppressed is
    the single send's 422 with the stored email."""
    if "problem" in result:
        return result
    out = {key: result[key] for key in ("index", "id", "status")}
    if result["failure_reason"]:
        out["failure_reason"] = result["failure_reason"]
    if result["suppressed"]:
        out["suppressed"] = result["suppressed"]
    if result["all_suppressed"]:
        out["problem"] = _problem(422, result["failure_reason"], [])
    return out


@router.post(
    "/emails/batch",
    response={200: BatchOut, 202: BatchOut, **ERRORS},
    summary="Send a batch of emails",
    exclude_none=True,
)
def send_batch(
    request,
    response: HttpResponse,
    payload: BatchIn,
    idempotency_key_header: str | None = Header(None, alias="Idempotency-Key"),
):
    """Send up to BATCH_MAX_EMAILS emails in one request; each item is checked as a single send
    would check it, and a bad item does not stop the others.

    One answer for the batch, `results` in the order given: each item either stored (`id`,
    `status`) or refused (`problem`: the 4xx problem a single send of it would answer, with
    its field errors; nothing stored for it). Every good item is stored in one transaction.
    An item whose every recipient is on the suppression list is stored `failed` without
    contacting a provider: it has both its `id` and a 422 `problem`.

    202 (queue mode): stored `queued` and handed to the workers in chunk messages.
    200 (sync mode, at most BATCH_SYNC_MAX_EMAILS): delivered here, one after the other, all
    within SEND_BUDGET_SECONDS; each item's status is `sent` or `failed`, or `queued` for one
    not reached in time (the sweep delivers it; `failure_reason` says so).
    An `Idempotency-Key` covers the whole batch for 24 hours: the same batch again answers
    the first one's results (as stored now, header `Idempotent-Replayed`) without storing or
    sending again; another batch under it is a 422; a repeat while the first is still being
    delivered (sync mode) is a 409. Batch keys are apart from single sends' keys.
    The body may be up to BATCH_MAX_BYTES (25 MB); more is a 413 before it is read.
    """
    key = idempotency_key(idempotency_key_header)
    batch_limits(len(payload.emails))  # before any item is read
    read = [_read_item(request.account, raw) for raw in payload.emails]
    result = emails_batch_send(
        account=request.account,
        items=[item for item, _ in read],
        idempotency_key=key,
        fingerprint=batch_fingerprint(part for _, part in read) if key else "",
    )
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    results = [_item_out(r) for r in result.results]
    stored = sum("id" in r for r in results)
    answer = {"stored": stored, "refused": len(results) - stored, "results": results}
    return Status(202 if settings.DELIVERY_MODE == "queue" else 200, answer)
