"""Errors as RFC 9457 problem details (application/problem+json), for every API failure."""

import json
import logging
from typing import Any

from django.http import Http404, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from mailer.provider_settings import ProviderSettingsError
from mailer.ratelimit import RateLimited
from mailer.validation import InvalidEmail

logger = logging.getLogger("mailer.api")

TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Content too large",
    415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
    502: "Bad gateway",
}  # fmt: skip


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


def install(api: NinjaAPI) -> None:
    @api.exception_handler(ValidationError)
    def validation_error(request, exc: ValidationError):
        errors = [
            {"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in exc.errors
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem(422, f"Invalid fields: {fields}.", errors=errors)

    def invalid_fields(request, exc: InvalidEmail | ProviderSettingsError):
        errors = [
            {"field": field, "message": message}
            for field, messages in exc.errors.items()
            for message in messages
        ]
        # The API says 422 for invalid fields (the original contract's 400 is legacy-only).
        status = exc.status if exc.status in (409, 413) else 422
        return problem(status, str(exc), errors=errors)

    api.add_exception_handler(InvalidEmail, invalid_fields)
    api.add_exception_handler(ProviderSettingsError, invalid_fields)

    @api.exception_handler(AuthenticationError)
    def unauthorized(request, exc: AuthenticationError):
        return problem(
            401,
            "Send a valid API token as 'Authorization: Bearer <token>'; this "
            "one is missing, unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )

    @api.exception_handler(RateLimited)
    def rate_limited(request, exc: RateLimited):
        return problem(
            429,
            f"{exc} Retry after {exc.retry_after} seconds.",
            headers={"Retry-After": str(exc.retry_after)},
        )

    @api.exception_handler(Http404)
    def not_found(request, exc):
        return problem(404, "No such resource for this account.")

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        cause = exc.__cause__
        if isinstance(cause, BadBody):
            return problem(
                cause.status, cause.detail, errors=[{"field": "body", "message": cause.detail}]
            )
        return problem(exc.status_code, exc.message)
