"""Reads of stored email templates, for the API and the templates page; every one scoped to the
account, by name (a slug, unique per account)."""

from __future__ import annotations

from typing import Any

from mailer.models import EmailTemplate
from mailer.templating import NAME_PATTERN, variable_names
from mailer.validation import control_character

from .emails import MAX_PAGE_SIZE
from .pages import Page, numbered_page

MAX_SEARCH_CHARS = 100


def template_get(*, account, name: str) -> EmailTemplate:
    """The account's template of this name; EmailTemplate.DoesNotExist for any other name
    (another account's templates included)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise EmailTemplate.DoesNotExist
    return EmailTemplate.objects.get(account=account, name=name)


def template_summary(template: EmailTemplate) -> dict[str, Any]:
    """What a list shows: no bodies (they may be 100,000 characters each)."""
    return {
        "id": template.pk,
        "name": template.name,
        "subject": template.subject,
        "created_at": template.created_at,
        "updated_at": template.updated_at,
    }


def template_detail(template: EmailTemplate) -> dict[str, Any]:
    """One template with its parts and the top-level variables they use."""
    used = {
        *variable_names(template.subject),
        *variable_names(template.text),
        *variable_names(template.html, html=True),
    }
    return template_summary(template) | {
        "text": template.text,
        "html": template.html,
        "variables": sorted(used),
    }


def template_names(*, account) -> list[str]:
    """The names of the account's templates, in order (the send form offers them)."""
    names = EmailTemplate.objects.filter(account=account).order_by("name")
    return list(names.values_list("name", flat=True))


def template_list(
    *, account, search: str = "", page: int = 1, page_size: int = 10, clamp: bool = False
) -> Page:
    """One page of the account's templates by name (summaries); `search` is part of the name,
    in any case. With `clamp`, a page past the end is the last page instead."""
    templates = EmailTemplate.objects.filter(account=account)
    if search := search.strip()[:MAX_SEARCH_CHARS].lower():
        if control_character(search):  # never in a name; PostgreSQL refuses a NUL in a query
            templates = templates.none()
        templates = templates.filter(name__contains=search)
    rows = templates.order_by("name").defer("text", "html")
    return numbered_page(rows, page=page, page_size=page_size, most=MAX_PAGE_SIZE,
                         show=template_summary, clamp=clamp)  # fmt: skip
