"""Errors as RFC 9457 problem details (application/problem+json), for every API failure."""

import json
import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from mailer.errors import AppError, Conflict, InvalidInput, MessageTooLarge, nearest
from mailer.ratelimit import RateLimited
from mailer.services.emails import IdempotencyConflict, IdempotencyKeyReused
from mailer.services.suppressions import AllRecipientsSuppressed

logger = logging.getLogger("mailer.api")

TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Content too large",
    415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
    502: "Bad gateway",
}  # fmt: skip
# The one map from application errors to the API's statuses: the nearest class listed wins.
STATUSES: dict[type[AppError], int] = {
    AppError: 400,
    InvalidInput: 422,  # the original contract's 400 is its own
    MessageTooLarge: 413,
    Conflict: 409,
    IdempotencyKeyReused: 422,  # the key names another request: this one is unprocessable
    AllRecipientsSuppressed: 422,  # stored failed: nobody left to send to
    RateLimited: 429,
}


class BadBody(Exception):
    """The request body can't be read as JSON; status is 400 or 415."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> HttpResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    response = HttpResponse(
        json.dumps(body), status=status, content_type="application/problem+json"
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _field(loc: list | tuple) -> str:
    # ninja locations look like ("body", "payload", "to", 0); people want "to[0]".
    parts = [p for p in loc if p not in ("body", "payload", "query", "path", "header")]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def app_error(exc: AppError) -> HttpResponse:
    """The API's answer to an application error: its status from STATUSES, every field error,
    and what the client needs to go on (the email holding an Idempotency-Key, when to retry)."""
    status = nearest(STATUSES, exc)
    errors = [
        {"field": field, "message": message}
        for field, messages in exc.errors.items()
        for message in messages
    ]
    if isinstance(exc, RateLimited):
        return problem(
            status,
            f"{exc} Retry after {exc.retry_after} seconds.",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, IdempotencyConflict):
        return problem(status, str(exc), errors=errors, email_id=exc.email.pk)
    if isinstance(exc, AllRecipientsSuppressed):
        return problem(status, str(exc), email_id=exc.email.pk, suppressed=exc.addresses)
    return problem(status, str(exc), errors=errors)


def install(api: NinjaAPI) -> None:
    @api.exception_handler(ValidationError)
    def validation_error(request, exc: ValidationError):
        errors = [
            {"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in exc.errors
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem(422, f"Invalid fields: {fields}.", errors=errors)

    api.add_exception_handler(AppError, lambda request, exc: app_error(exc))

    @api.exception_handler(AuthenticationError)
    def unauthorized(request, exc: AuthenticationError):
        return problem(
            401,
            "Send a valid API token as 'Authorization: Bearer <token>'; this "
            "one is missing, unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )

    def not_found(request, exc):
        return problem(404, "No such resource for this account.")

    # A selector's Model.DoesNotExist: an id of nothing, or of another account's thing.
    api.add_exception_handler(Http404, not_found)
    api.add_exception_handler(ObjectDoesNotExist, not_found)

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        cause = exc.__cause__
        if isinstance(cause, BadBody):
            return problem(
                cause.status, cause.detail, errors=[{"field": "body", "message": cause.detail}]
            )
        return problem(exc.status_code, exc.message)
