"""The templates pages: the account's stored email templates, add and edit one (name, subject,
text, HTML) with a live preview of it rendered with sample variables, and delete one. The
preview is also a page endpoint (session and CSRF, like every form) that static/js/
template-preview.js calls as the template is typed; it renders with the services a send uses."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from mailer.errors import AppError, InvalidInput
from mailer.models import EmailTemplate
from mailer.selectors.templates import template_detail, template_get, template_list
from mailer.services.templates import (
    template_create,
    template_delete,
    template_preview,
    template_update,
)
from mailer.templating import PARTS

from .forms import template_variables
from .template_forms import TemplateForm

PAGE_SIZE = 25
FIELDS = ("name", *PARTS)


def _template(request: HttpRequest, name: str) -> EmailTemplate:
    try:
        return template_get(account=request.user, name=name)
    except EmailTemplate.DoesNotExist:
        raise Http404("No such template.") from None


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 9 else 1


@login_required
@require_http_methods(["GET"])
def listing(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("search", "").strip()[:100]
    page = template_list(
        account=request.user,
        search=search,
        page=_page_number(request.GET.get("page")),
        page_size=PAGE_SIZE,
        clamp=True,
    )
    context = {"page": page, "templates": page.results, "search": search}
    return render(request, "email_templates/list.html", context)


def _variables(raw: str) -> dict[str, Any]:
    """The sample variables typed on the page; InvalidInput naming `variables` when they are
    not a JSON object (the services judge the rest)."""
    try:
        return template_variables(raw)
    except ValueError as exc:
        raise InvalidInput({"variables": [str(exc)]}) from None


def _preview(data) -> dict[str, Any]:
    """The preview of a form's template: {"ok": True, subject, text, html}, or {"ok": False,
    "message", "errors": {field: [messages]}} saying what to fix (the same errors as a send)."""
    try:
        rendered = template_preview(
            **{part: str(data.get(part, "")) for part in PARTS},
            variables=_variables(str(data.get("variables", ""))),
        )
    except AppError as exc:
        return {"ok": False, "message": exc.message, "errors": exc.errors}
    return {"ok": True, "subject": rendered.subject, "text": rendered.text, "html": rendered.html}


def _render_form(request, form: TemplateForm, template: EmailTemplate | None) -> HttpResponse:
    data = form.data if form.is_bound else {f: form[f].value() or "" for f in form.fields}
    context = {"form": form, "template": template, "preview": _preview(data)}
    return render(request, "email_templates/form.html", context)


def _saved(request: HttpRequest, form: TemplateForm, template: EmailTemplate | None):
    """Create or update from a valid form: the saved template, or None with the services'
    errors added to the form."""
    fields = {name: form.cleaned_data[name] for name in FIELDS}
    try:
        if template is None:
            return template_create(account=request.user, **fields)
        return template_update(template=template, **fields)
    except AppError as exc:
        form.add_app_error(exc)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def add(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_form(request, TemplateForm(initial={"variables": "{}"}), None)
    form = TemplateForm(request.POST)
    if form.is_valid() and (saved := _saved(request, form, None)):
        messages.success(request, f"Template {saved.name} saved.")
        return redirect("template-edit", name=saved.name)
    return _render_form(request, form, None)


@login_required
@require_http_methods(["GET", "POST"])
def edit(request: HttpRequest, name: str) -> HttpResponse:
    template = _template(request, name)
    if request.method != "POST":
        detail = template_detail(template)
        samples = json.dumps({variable: variable for variable in detail["variables"]}, indent=2)
        initial = {field: detail[field] for field in FIELDS} | {"variables": samples}
        return _render_form(request, TemplateForm(initial=initial), template)
    form = TemplateForm(request.POST)
    if form.is_valid() and (saved := _saved(request, form, template)):
        messages.success(request, f"Template {saved.name} saved.")
        return redirect("template-edit", name=saved.name)
    return _render_form(request, form, _template(request, name))


@login_required
@require_POST
def delete(request: HttpRequest, name: str) -> HttpResponse:
    template = _template(request, name)
    template_delete(template=template)
    messages.success(request, f"Template {template.name} deleted.")
    return redirect("templates")


@login_required
@require_POST
def preview(request: HttpRequest) -> JsonResponse:
    """The live preview's endpoint: the posted form rendered with its sample variables. Always
    a 200 with `ok` (a template being typed is often unfinished: that is an answer, not a
    failed request); the session and the CSRF token are checked as for every form."""
    return JsonResponse(_preview(request.POST))
