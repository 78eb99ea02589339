"""The suppression list page: search and page through the list, add an address, remove one,
import a CSV file and export the list as one."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mailer.errors import AppError
from mailer.selectors.suppressions import MAX_SEARCH_CHARS, suppression_page
from mailer.services.suppressions import (
    MAX_IMPORT_BYTES,
    suppression_add_checked,
    suppression_delete,
    suppressions_export,
    suppressions_import,
)
from mailer.vocabulary import SuppressionReason

from .forms import PageForm

PAGE_SIZE = 20


class SuppressionForm(PageForm, forms.Form):
    """Add one address; the services judge the address and the expiry."""

    address = forms.CharField(
        label="Address",
        max_length=998,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    reason = forms.ChoiceField(
        label="Reason", choices=SuppressionReason.choices, initial=SuppressionReason.MANUAL
    )
    expires_at = forms.DateTimeField(
        label="Expires",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Leave it empty to keep the address on the list until it is removed.",
    )


class ImportForm(PageForm, forms.Form):
    file = forms.FileField(
        label="CSV file",
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv,text/plain"}),
        help_text="One address per line, or an <code>address</code> column (with optional "
        "<code>reason</code> and <code>expires_at</code> columns, as the export writes them). "
        f"UTF-8, at most {filesizeformat(MAX_IMPORT_BYTES)}. A bad line stops the whole import.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; at most "
                f"{filesizeformat(MAX_IMPORT_BYTES)} can be imported at once."
            )
        return upload


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 9 else 1


def _filters(params) -> dict[str, str]:
    """The list's search and reason from a query (or a remove form), unknown reasons left out."""
    reason = params.get("reason", "")
    return {
        "search": params.get("search", "").strip()[:MAX_SEARCH_CHARS],
        "reason": reason if reason in SuppressionReason.values else "",
    }


def _render(
    request: HttpRequest,
    *,
    form: SuppressionForm | None = None,
    import_form: ImportForm | None = None,
) -> HttpResponse:
    filters = _filters(request.GET)
    page = suppression_page(
        account=request.user,
        search=filters["search"],
        reason=filters["reason"] or None,
        page=_page_number(request.GET.get("page")),
        page_size=PAGE_SIZE,
        clamp=True,
    )
    context = {
        "form": form or SuppressionForm(),
        "import_form": import_form or ImportForm(),
        "entries": page.results,
        "page": page,
        "filters": filters,
        "filtered": any(filters.values()),
        "query": urlencode({k: v for k, v in filters.items() if v}),
        "reasons": SuppressionReason.choices,
    }
    return render(request, "suppressions/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def listing(request: HttpRequest) -> HttpResponse:
    """The list, searched and paged, with the forms; a POST adds the address of the form."""
    if request.method != "POST":
        return _render(request)
    form = SuppressionForm(request.POST)
    if form.is_valid():
        try:
            entry, created = suppression_add_checked(
                account=request.user, source="web", **form.cleaned_data
            )
        except AppError as exc:
            form.add_app_error(exc)
        else:
            if created:
                messages.success(request, f"Added {entry.address}: no email goes to it now.")
            else:
                messages.info(request, f"{entry.address} is already on the list.")
            return redirect("suppressions")
    return _render(request, form=form)


@login_required
@require_POST
def remove(request: HttpRequest) -> HttpResponse:
    """Take the form's address off the list, then show the list as it was (search, page)."""
    address = request.POST.get("address", "")[:998]
    if address and suppression_delete(account=request.user, address=address):
        messages.success(request, f"Removed {address}: email is sent to it again.")
    else:
        messages.info(request, f"{address or 'That address'} was not on the list.")
    back = {k: v for k, v in _filters(request.POST).items() if v}
    if (page := _page_number(request.POST.get("page"))) > 1:
        back["page"] = str(page)
    return redirect(f"{reverse('suppressions')}?{urlencode(back)}" if back else "suppressions")


@login_required
@require_POST
def import_csv(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            counts = suppressions_import(
                account=request.user, text=form.cleaned_data["file"].read()
            )
        except AppError as exc:
            form.add_app_error(exc)
        else:
            messages.success(
                request,
                f"Imported {counts['rows']} address{'es' if counts['rows'] != 1 else ''}: "
                f"{counts['added']} new on the list.",
            )
            return redirect("suppressions")
    return _render(request, import_form=form)


@login_required
@require_GET
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        suppressions_export(account=request.user), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="suppressions.csv"'
    return response
