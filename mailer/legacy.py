"""The original service's HTTP contract, kept for old clients: /send_email/, /view_sent_emails/."""

from __future__ import annotations

import math
import re
from datetime import datetime
from email.utils import getaddresses
from typing import Any
from urllib import parse

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers

from mailer import selectors
from mailer.authentication import authenticate
from mailer.errors import AppError, Conflict, InvalidInput, MessageTooLarge, nearest
from mailer.models import ApiToken, Email, EmailStatus, ProviderConfig
from mailer.providers import kind_label, specs
from mailer.ratelimit import RateLimited
from mailer.send_request import outgoing_email
from mailer.services import email_send, failover_order
from mailer.services.suppressions import AllRecipientsSuppressed
from mailer.validation import control_character, max_address_text, parse_json

PAGE_SIZE = 10
# Our validation's field names -> the names the original's clients send and read back.
LEGACY_FIELDS = {"from": "from_email", "to": "to_email", "text": "body_text"}
# The fields this view reads; in a JSON body each is text, a number or null (or a list of them).
READ_FIELDS = ("to_email", "from_email", "subject", "body_text", "sent_via", "TOKEN")
_DIGITS = re.compile(r"^[0-9]{1,9}$")
_NAME_SPECIALS = re.compile(r'[()<>@,;:\\".\[\]]')


# The one map from application errors to this contract's answers: (status, message), the
# nearest class listed winning; None says the error's own message.
ANSWERS: dict[type[AppError], tuple[int, str | None]] = {
    AppError: (400, None),
    InvalidInput: (400, "The email is invalid; see errors."),
    MessageTooLarge: (413, "The email is too large."),
    Conflict: (409, None),
    RateLimited: (429, None),
    AllRecipientsSuppressed: (422, None),
}


def _answer(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"message": message, "status": status, **extra}, status=status)


def error_answer(exc: AppError) -> JsonResponse:
    """This contract's answer to an application error: {"message", "status"}, with each field
    error under the name the original's clients use, and Retry-After when rate limited."""
    status, message = nearest(ANSWERS, exc)
    if isinstance(exc, RateLimited):
        response = _answer(
            status,
            f"Rate limit of {settings.API_RATE_LIMIT} requests per account exceeded; "
            f"retry in {exc.retry_after} seconds.",
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    extra: dict[str, Any] = {}
    if exc.errors:
        extra["errors"] = {LEGACY_FIELDS.get(k, k): v for k, v in exc.errors.items()}
    if isinstance(exc, AllRecipientsSuppressed):
        extra.update(id=exc.email.pk, suppressed=exc.addresses)
    return _answer(status, message or str(exc), **extra)


def _authenticate(request: HttpRequest, raw: str) -> ApiToken | JsonResponse:
    """The request's active token (its rate limit counted), or the answer refusing it."""
    if not raw:
        return _answer(403, "Token is missing !!")
    # A token is printable ASCII: anything else (a lone surrogate can't even be hashed) is wrong.
    try:
        token = None if control_character(raw) else authenticate(request, raw)
    except RateLimited as exc:
        return error_answer(exc)
    if token is None:
        return _answer(403, "invalid token !!")
    return token


def _raw_token(request: HttpRequest, fields: QueryDict) -> str:
    """TOKEN where the original took it (the form of a POST, the query of a GET), else a bearer
    header, which keeps the token out of URLs and server logs."""
    raw = (fields.get("TOKEN") or "").strip()
    if raw:
        return raw
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _json_text(item: Any) -> str | None:
    """A JSON value as the original's DRF CharField took it (text or a number), else None."""
    if item is None:
        return ""
    if isinstance(item, str):
        return item
    if isinstance(item, int | float) and not isinstance(item, bool):
        return str(item) if math.isfinite(item) else None
    return None


def _form(request: HttpRequest) -> QueryDict:
    """The posted fields. The original was a DRF view, which also took JSON; so do we.
    InvalidInput (MessageTooLarge for a body over its limit) when they can't be read."""
    try:
        if request.content_type != "application/json":
            return request.POST
        data = parse_json(request.body or b"{}")
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise MessageTooLarge({"message": [f"The request body is over {limit} bytes."]}) from None
    except MultiPartParserError as exc:
        raise InvalidInput({"body": [f"The multipart body could not be read: {exc}"]}) from None
    except SuspiciousOperation as exc:  # too many fields or files
        raise InvalidInput({"body": [f"The body could not be read: {exc}"]}) from None
    except ValueError as exc:
        raise InvalidInput({"body": [str(exc)]}) from None
    if not isinstance(data, dict):
        raise InvalidInput({"body": ["The body is not a JSON object."]})
    fields, errors = QueryDict(mutable=True), {}
    for name in READ_FIELDS:
        if name not in data:
            continue
        value = data[name]
        for item in value if isinstance(value, list) else [value]:
            text = _json_text(item)
            if text is None:
                errors[name] = [
                    "Must be text, a number or null (or a list of them); NaN and Infinity are "
                    "not numbers."
                ]
                break
            fields.appendlist(name, text)
    if errors:
        raise InvalidInput(errors)
    return fields


def _address(name: str, addr: str) -> str:
    if not name:
        return addr
    if _NAME_SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


def _recipients(values: list[str]) -> list[str]:
    """to_email as one address or a comma-separated list (the field may also repeat)."""
    longest = settings.MAX_RECIPIENTS * (max_address_text() + 2)
    if len(values) > settings.MAX_RECIPIENTS:
        return [value.strip() for value in values if value.strip()]  # validation counts them
    recipients = []
    for value in values:
        if len(value) > longest:
            # Too long to be valid (too many addresses, or one too long): never parse it. Split
            # it plainly so that validation can count the addresses, and refuse it.
            recipients.extend(part.strip() for part in value.split(",") if part.strip())
            continue
        if control_character(value):
            recipients.append(value.strip())  # validation names the character, as it was sent
            continue
        pairs = [pair for pair in getaddresses([value]) if pair != ("", "")]
        if len(pairs) <= 1:
            # One address (or none parsed): validation judges the text exactly as it was sent.
            if value.strip():
                recipients.append(value.strip())
            continue
        recipients.extend(_address(name, addr) for name, addr in pairs)
    return recipients


def sent_via_kinds() -> dict[str, str]:
    """The original's sent_via numbers -> kinds (1 SES, 2 SMTP, 3 SendGrid, then the rest)."""
    by_number = sorted(specs().values(), key=lambda spec: spec.sent_via)
    return {str(spec.sent_via): spec.kind for spec in by_number}


def legacy_name(kind: str) -> str:
    """What the original called a kind in its answers ("amazon_SES")."""
    spec = specs().get(kind)
    return spec.legacy_name if spec else kind


def _requested_provider(account, value: str) -> tuple[ProviderConfig | None, str]:
    """sent_via: (the account's first enabled provider of that kind, "") if it has one. A kind
    it has not configured is a preference that can't be honoured, as in the original: (None,
    a note saying so), and the account's providers are tried in order. InvalidInput for a
    number that names no kind."""
    value = value.strip()
    if not value:
        return None, ""
    kinds = sent_via_kinds()
    kind = kinds.get(value)
    if kind is None:
        numbers = ", ".join(f"{number} ({kind_label(k)})" for number, k in kinds.items())
        raise InvalidInput(
            {
                "sent_via": [
                    f"{value!r} is not a valid choice; use {numbers}, or leave it blank for "
                    "the account's default order."
                ]
            }
        )
    configs = failover_order(account=account)
    chosen = next((config for config in configs if config.kind == kind), None)
    if chosen is not None:
        return chosen, ""
    numbers = {k: number for number, k in kinds.items()}
    configured = ", ".join(
        f"{kind_label(c.kind)} {c.name!r} (sent_via={numbers.get(c.kind, '-')})" for c in configs
    )
    return None, (
        f"No {kind_label(kind)} provider is configured for this account (sent_via={value}), so "
        f"its providers were tried in order: {configured or 'none'}."
    )


def _sent_answer(email: Email, note: str) -> JsonResponse:
    extra: dict[str, Any] = {"id": email.pk}
    if note:  # the requested kind could not be honoured: said in the answer, not hidden
        extra["sent_via_note"] = note
    if email.status == EmailStatus.SENT:
        via = legacy_name(email.sent_via_kind)
        return _answer(200, f"Email sent successfully via {via}", sent_via=via, **extra)
    if email.status == EmailStatus.FAILED:
        reason = email.failure_reason
        return _answer(502, f"Email could not be sent: {reason}", failure_reason=reason, **extra)
    return _answer(202, "Email accepted for delivery", **extra)


def _from_browser(request: HttpRequest) -> bool:
    """A person's browser (it prefers HTML to JSON), not an API client, asked for the page."""
    return request.get_preferred_type(["application/json", "text/html"]) == "text/html"


def _send_page(request: HttpRequest) -> HttpResponse:
    """The original served its form here; the send page replaces it."""
    if request.user.is_authenticated:
        return redirect("send")
    return redirect_to_login(reverse("send"))


@csrf_exempt  # authenticated by its token, never by a cookie
@vary_on_headers("Accept")
def send_email(request: HttpRequest) -> HttpResponse:
    """Send one email: 200 sent, 502 every provider failed, 400/413 invalid, 403, 429.
    A browser's GET goes to the send page."""
    if request.method in ("GET", "HEAD") and _from_browser(request):
        return _send_page(request)
    return _send_email(request)


@require_http_methods(["POST"])
def _send_email(request: HttpRequest) -> JsonResponse:
    try:
        fields = _form(request)
        token = _authenticate(request, _raw_token(request, fields))
        if isinstance(token, JsonResponse):
            return token
        problems, requested, note = {}, None, ""
        try:
            requested, note = _requested_provider(token.account, fields.get("sent_via", ""))
        except InvalidInput as exc:  # named with every other bad field
            problems = exc.errors
        outgoing = outgoing_email(
            problems=problems,
            from_email=fields.get("from_email", ""),
            to=_recipients(fields.getlist("to_email")),
            subject=fields.get("subject", ""),
            text=fields.get("body_text", ""),
        )
        result = email_send(account=token.account, outgoing=outgoing, requested_provider=requested)
    except AppError as exc:
        return error_answer(exc)
    return _sent_answer(result.email, note)


# Listing --------------------------------------------------------------------------------------


def _created(value: datetime) -> str:
    # Django REST Framework's DateTimeField output: ISO 8601, UTC written as "Z".
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _row(summary: dict[str, Any], bodies: dict[int, str]) -> dict[str, Any]:
    via = summary["sent_via"]
    return {
        "id": summary["id"],
        "from_email": summary["from"],
        "to_email": ", ".join(summary["to"]),
        "subject": summary["subject"],
        "body_text": bodies.get(summary["id"], summary["text_preview"]),
        "sent_via": legacy_name(via["kind"]) if via else None,
        "created": _created(summary["created_at"]),
        "status": summary["status"],
    }


def _page_link(request: HttpRequest, page: int | None) -> str | None:
    """As DRF's PageNumberPagination: the same URL with page replaced (dropped for page 1)."""
    if page is None:
        return None
    scheme, netloc, path, query, fragment = parse.urlsplit(request.build_absolute_uri())
    params = parse.parse_qs(query, keep_blank_values=True)
    params.pop("page", None)
    if page > 1:
        params["page"] = [str(page)]
    query = parse.urlencode(sorted(params.items()), doseq=True)
    return parse.urlunsplit((scheme, netloc, path, query, fragment))


def _invalid_page() -> JsonResponse:
    return JsonResponse({"detail": "Invalid page."}, status=404)


@require_http_methods(["GET", "HEAD"])
@vary_on_headers("Accept")
def view_sent_emails(request: HttpRequest) -> HttpResponse:
    """The account's emails, newest first, 10 a page, paginated as the original DRF view was.
    A browser goes to the sent-emails page instead (the TOKEN is not carried along)."""
    if _from_browser(request):
        page = request.GET.get("page", "")
        return redirect(reverse("emails") + (f"?page={page}" if _DIGITS.match(page) else ""))
    token = _authenticate(request, _raw_token(request, request.GET))
    if isinstance(token, JsonResponse):
        return token
    wanted = request.GET.get("page", "1")
    if wanted != "last" and not (_DIGITS.match(wanted) and int(wanted) >= 1):
        return _invalid_page()
    # "last" reads the first page for the count, then the last one (unless they are the same).
    number = 1 if wanted == "last" else int(wanted)
    page = selectors.email_page(account_id=token.account_id, page=number, page_size=PAGE_SIZE)
    if wanted == "last" and page.number != page.last:
        page = selectors.email_page(
            account_id=token.account_id, page=page.last, page_size=PAGE_SIZE
        )
    if not page.exists:
        return _invalid_page()
    # The original listed whole bodies. The cached page holds previews only (bodies would fill
    # Redis), so the bodies longer than the preview are read for this page's rows alone.
    cut = [summary["id"] for summary in page.results if summary["text_truncated"]]
    bodies = selectors.email_texts(account_id=token.account_id, email_ids=cut)
    return JsonResponse(
        {
            "count": page.count,
            "next": _page_link(request, page.next_number),
            "previous": _page_link(request, page.previous_number),
            "results": [_row(summary, bodies) for summary in page.results],
        }
    )
