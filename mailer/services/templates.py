"""Stored email templates: create, change and delete an account's templates (each part compiled
when saved, so a syntax error is found then, with its line), and render one with variables
(mailer/templating: the bounded sandbox)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from mailer.errors import Conflict, InvalidInput, NameTaken
from mailer.models import EmailTemplate
from mailer.templating import (
    NAME_HELP,
    NAME_PATTERN,
    PARTS,
    Rendered,
    TemplateInvalid,
    render,
    source_problems,
)

logger = logging.getLogger("mailer.services")

MAX_TEMPLATES_PER_ACCOUNT = 500


class TemplateNotFound(InvalidInput):
    """No template of the account has this name. An InvalidInput naming `template`, so a send
    that names an unknown template is a 422 on that field (the templates API itself answers 404
    for a name in its path: mailer.selectors.templates.template_get)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__({"template": [f"This account has no template named {name[:100]!r}."]})


class TemplateNameTaken(NameTaken):
    """Another template of the account has this name."""


class TemplateLimitReached(Conflict):
    """The account has as many templates as it may have."""


def _cleaned(fields: dict[str, Any]) -> dict[str, str]:
    """The given fields (name, subject, text, html) as they are stored, or TemplateInvalid
    naming every bad one: the name's form, each part's size, syntax (with its line) and what
    the sandbox refuses; a template needs a subject and a text or HTML part."""
    errors: dict[str, list[str]] = {}
    if "name" in fields:
        name = fields["name"]
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            errors["name"] = [f"A template's name has {NAME_HELP}"]
    for part in PARTS:
        if part in fields and (problems := source_problems(part, fields[part])):
            errors[part] = problems
    if "subject" in fields and "subject" not in errors and not fields["subject"].strip():
        errors["subject"] = ["A template needs a subject."]
    if errors:
        raise TemplateInvalid(errors)
    return dict(fields)


def _needs_a_body(text: str, html: str) -> None:
    if not (text.strip() or html.strip()):
        message = "Give a text or an HTML part (or both)."
        raise TemplateInvalid({"text": [message]}, message=message)


def _name_taken(name: str) -> TemplateNameTaken:
    return TemplateNameTaken({"name": [f"This account already has a template named {name!r}."]})


def template_create(
    *, account, name: str, subject: str, text: str = "", html: str = ""
) -> EmailTemplate:
    """Save a new template. TemplateInvalid names each bad field; TemplateNameTaken when the
    account has one of this name; TemplateLimitReached past MAX_TEMPLATES_PER_ACCOUNT (the
    account's row is locked meanwhile, so two at once can't both take the last place)."""
    clean = _cleaned({"name": name, "subject": subject, "text": text, "html": html})
    _needs_a_body(clean["text"], clean["html"])
    template = EmailTemplate(account=account, **clean)
    try:
        with transaction.atomic():
            users = get_user_model().objects.select_for_update().filter(pk=account.pk)
            list(users.values_list("pk", flat=True))  # take the lock
            if EmailTemplate.objects.filter(account=account).count() >= MAX_TEMPLATES_PER_ACCOUNT:
                raise TemplateLimitReached(
                    f"This account already has {MAX_TEMPLATES_PER_ACCOUNT} templates, the most "
                    "it may have; delete one it no longer uses first."
                )
            template.save()
    except IntegrityError:
        raise _name_taken(clean["name"]) from None
    logger.info("account %s: template %s created", account.pk, template.name)
    return template


def template_update(
    *,
    template: EmailTemplate,
    name: str | None = None,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
) -> EmailTemplate:
    """Change the fields given (None: unchanged); a new name renames it. The same checks as
    template_create; nothing is saved unless every field passes."""
    given = {"name": name, "subject": subject, "text": text, "html": html}
    clean = _cleaned({k: v for k, v in given.items() if v is not None})
    _needs_a_body(clean.get("text", template.text), clean.get("html", template.html))
    for field, value in clean.items():
        setattr(template, field, value)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        template.refresh_from_db()
        raise _name_taken(clean["name"]) from None
    return template


def template_delete(*, template: EmailTemplate) -> None:
    logger.info("account %s: template %s deleted", template.account_id, template.name)
    template.delete()


def template_render(*, account, name: str, variables: dict[str, Any]) -> Rendered:
    """The account's template `name` rendered with `variables`: Rendered(subject, text, html),
    ready for a send (an absent part is ""). TemplateNotFound for a name the account has no
    template of (another account's included); otherwise mailer.templating.render's errors,
    each an InvalidInput naming the field (`variables.first_name`, `html`, ...)."""
    template = None
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        template = EmailTemplate.objects.filter(account=account, name=name).first()
    if template is None:
        raise TemplateNotFound(name if isinstance(name, str) else repr(name))
    return render(
        subject=template.subject, text=template.text, html=template.html, variables=variables
    )


def template_preview(*, subject: str, text: str, html: str, variables: dict[str, Any]) -> Rendered:
    """A template being written, rendered as template_render would render it once saved (the
    page's live preview): the same sandbox, bounds and errors."""
    return render(subject=subject, text=text, html=html, variables=variables)
