"""Email pages: the send form, the sent-emails list and one email's detail with its attempts
and what the providers reported after hand-off."""

from __future__ import annotations

import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mailer import selectors
from mailer.errors import AppError
from mailer.models import Email, EmailStatus
from mailer.send_request import outgoing_email, request_fingerprint
from mailer.services import IdempotencyConflict, email_send
from mailer.services.outgoing import schedule_time
from mailer.services.schedule import CANCELABLE, email_cancel, email_resend
from mailer.services.suppressions import AllRecipientsSuppressed, bare
from mailer.services.templates import template_render
from mailer.vocabulary import EventType, Outcome

from .email_forms import EmailFilterForm, SendForm

PAGE_SIZE = 10
OUTCOMES = dict(Outcome.choices)
EVENT_TYPES = dict(EventType.choices)
# Where each kind keeps what the receiving server said (mailer.providers.<kind>.events): the
# first of these an event has is shown as its diagnostic.
DIAGNOSTIC_KEYS = ("diagnostic", "diag", "smtp_response", "description", "bounce_description",
                   "message", "reason")  # fmt: skip


def _announce(request: HttpRequest, email_id: int) -> None:
    """Tell the person at once what became of the email they sent."""
    email = selectors.email_detail(selectors.email_get(account=request.user, email_id=email_id))
    tries = len(email["attempts"])
    if email["status"] == EmailStatus.SENT:
        via = email["sent_via"] or {}
        name = via.get("name") or via.get("kind")
        after = f" after {tries} attempts" if tries > 1 else ""
        messages.success(request, f"Sent{f' via {name}' if name else ''}{after}.")
    elif email["status"] == EmailStatus.SCHEDULED:
        messages.info(
            request,
            f"Scheduled for {email['send_at']:%-d %b %Y, %H:%M} UTC: it is sent then, and can "
            "be canceled until then.",
        )
    elif email["status"] == EmailStatus.FAILED:
        plural = "s" if tries != 1 else ""
        messages.error(
            request,
            f"Not sent: no provider accepted it ({tries} attempt{plural}). "
            "The reason and each attempt are below.",
        )
    else:
        messages.info(request, "Queued: a worker sends it shortly; this page shows the outcome.")


def _send(request: HttpRequest, form: SendForm) -> HttpResponse | None:
    """Send the valid form's email and redirect to it; None when it was refused (the errors
    are on the form)."""
    try:
        send_at = schedule_time(form.chosen_send_at)
        values, template = form.email_values(), form.chosen_template
        if template is not None:
            values |= template_render(account=request.user, **template).parts()
        outgoing = outgoing_email(**values)
        fingerprint = request_fingerprint(
            outgoing, form.chosen_provider, template=template, send_at=send_at
        )
        result = email_send(
            account=request.user,
            outgoing=outgoing,
            requested_provider=form.chosen_provider,
            idempotency_key=form.idempotency_key(fingerprint),
            fingerprint=fingerprint,
            send_at=send_at,
        )
    except IdempotencyConflict as exc:  # the same form again while its email is being sent
        messages.info(request, "This form was already sent; here is its email.")
        return redirect("email", email_id=exc.email.pk)
    except AppError as exc:
        form.add_app_error(exc)
        return None
    if result.replayed:
        messages.info(request, "This form was already sent; here is its email.")
    else:
        _announce(request, result.email.pk)
    return redirect("email", email_id=result.email.pk)


@login_required
@require_http_methods(["GET", "POST"])
def send(request: HttpRequest) -> HttpResponse:
    providers = [c for c in selectors.provider_list(account=request.user) if c.enabled]
    form = SendForm(
        request.POST or None,
        request.FILES or None,
        providers=providers,
        templates=selectors.template_names(account=request.user),
        initial={"from_email": request.user.email},
    )
    if request.method == "POST" and form.is_valid():
        response = _send(request, form)
        if response is not None:
            return response
    return render(request, "emails/send.html", {"form": form, "providers": providers})


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 9 else 1


@login_required
@require_GET
def listing(request: HttpRequest) -> HttpResponse:
    providers = selectors.provider_list(account=request.user)
    filters = EmailFilterForm(request.GET, providers=providers)
    chosen = filters.filters()
    # A page past the end (emails went away, or a hand-made URL) shows the last one.
    page = selectors.email_page(
        account_id=request.user.pk,
        page=_page_number(request.GET.get("page")),
        page_size=PAGE_SIZE,
        clamp=True,
        **chosen,
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filters": filters,
        "filtered": any(chosen.values()),
        "emails": [{**row, "cancelable": row["status"] in CANCELABLE} for row in page.results],
        "count": page.count,
        "page": page,
        "query": query.urlencode(),
        "has_providers": bool(providers),
    }
    return render(request, "emails/list.html", context)


@login_required
@require_GET
def detail(request: HttpRequest, email_id: int) -> HttpResponse:
    try:
        email = selectors.email_get(account=request.user, email_id=email_id)
    except Email.DoesNotExist:
        raise Http404("No such email in your account.") from None
    detail = selectors.email_detail(email)
    for attempt in detail["attempts"]:
        attempt["outcome_label"] = OUTCOMES.get(attempt["outcome"], attempt["outcome"])
    in_flight = detail["status"] in (EmailStatus.QUEUED, EmailStatus.SENDING)
    context = {
        "email": detail,
        "in_flight": in_flight,
        "recipients": _per_recipient(detail),
        "cancelable": detail["status"] in CANCELABLE,
        "resend_submission": secrets.token_urlsafe(16),
    }
    return render(request, "emails/detail.html", context)


def _local_next(request: HttpRequest, fallback: str) -> str:
    """Where a button's form asks to go back to (its page, with its query string): a path on
    this site only; anything else, the fallback."""
    target = request.POST.get("next", "")
    local = target.startswith("/") and not target.startswith(("//", "/\\"))
    if local and url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return target
    return fallback


@login_required
@require_POST
def cancel(request: HttpRequest, email_id: int) -> HttpResponse:
    """Cancel a scheduled or queued email, then go back to the page the button was on."""
    back = _local_next(request, reverse("emails"))
    try:
        email = email_cancel(account=request.user, email_id=email_id)
    except Email.DoesNotExist:
        raise Http404("No such email in your account.") from None
    except AppError as exc:  # NotCancelable: its delivery started, or it is done
        messages.error(request, exc.message)
        return redirect(back)
    subject = email.subject or "(no subject)"
    messages.success(request, f"Canceled email #{email.pk} ({subject}): it will not be sent.")
    return redirect(back)


@login_required
@require_POST
def resend(request: HttpRequest, email_id: int) -> HttpResponse:
    """Send a failed email again as a new one linked to it, and show the new one. The form's
    submission makes a second click the same resend, not another."""
    submission = request.POST.get("submission", "")[:64]
    key = f"web:resend:{email_id}:{submission}" if submission else ""
    try:
        result = email_resend(account=request.user, email_id=email_id, idempotency_key=key)
    except Email.DoesNotExist:
        raise Http404("No such email in your account.") from None
    except IdempotencyConflict as exc:  # the same button again while its resend is sent
        messages.info(request, "This email was already resent; here is the resend.")
        return redirect("email", email_id=exc.email.pk)
    except AllRecipientsSuppressed as exc:  # stored failed: suppressed since the first send
        messages.error(request, exc.message)
        return redirect("email", email_id=exc.email.pk)
    except AppError as exc:  # NotResendable: it did not fail
        messages.error(request, exc.message)
        return redirect("email", email_id=email_id)
    if result.replayed:
        messages.info(request, "This email was already resent; here is the resend.")
    else:
        _announce(request, result.email.pk)
    return redirect("email", email_id=result.email.pk)


def _event_row(event: dict) -> dict:
    """One provider event as the timeline shows it: its type's label and, from what the
    provider said, the diagnostic, the SMTP code and a clicked URL (text, never a link)."""
    said = event["detail"] if isinstance(event["detail"], dict) else {}
    diagnostic = next((said[key] for key in DIAGNOSTIC_KEYS if said.get(key)), "")
    return {
        **event,
        "type_label": EVENT_TYPES.get(event["type"], event["type"]),
        "diagnostic": str(diagnostic),
        "code": _smtp_code(said.get("code")),
        "url": str(said.get("url") or ""),
    }


def _smtp_code(code) -> str:
    """An SMTP reply or enhanced status code ("550", "5.1.1"); not a provider's own number
    (Postmark's bounce TypeCode 1 means nothing to a reader)."""
    if isinstance(code, str):
        return code
    return str(code) if type(code) is int and 200 <= code <= 599 else ""


def _per_recipient(email: dict) -> list[dict]:
    """The provider events on one timeline grouped per recipient: each recipient's events in
    time order and its latest state (mailer.services.events). Once any event is in, the
    recipients no provider reported on yet follow with none; suppressed ones were never sent."""
    groups: dict[str, list[dict]] = {}
    for event in sorted(email["events"], key=lambda e: e["occurred_at"]):
        groups.setdefault(event["recipient"], []).append(_event_row(event))
    if groups:
        for address in (*email["to"], *email["cc"], *email["bcc"]):
            groups.setdefault(bare(address), [])
    states = email["recipient_states"] or {}
    rows = []
    for address, events in groups.items():
        state = (states.get(address) or {}).get("state", "")
        label = EVENT_TYPES.get(state, state)
        rows.append({"address": address, "events": events, "state": state, "state_label": label})
    return rows
