"""Request and response shapes of /api/v1/templates (pydantic, through django-ninja)."""

from datetime import datetime
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict

from mailer.templating import (
    MAX_BODY_SOURCE_CHARS,
    MAX_SUBJECT_SOURCE_CHARS,
    MAX_VARIABLES_BYTES,
    NAME_HELP,
)

_NAME = f"The template's name, unique in the account: {NAME_HELP}"
_SUBJECT = "The subject, a Jinja2 template of one line (not escaped)."
_TEXT = "The text part, a Jinja2 template (not escaped). A template needs text, html or both."
_HTML = "The HTML part, a Jinja2 template; variables are HTML-escaped (`|safe` to opt out)."
_VARIABLES = (
    "The values the template uses, as a JSON object (text, numbers, booleans, null, lists and "
    f"objects; at most {MAX_VARIABLES_BYTES} bytes, 10 levels deep). A variable the template "
    "uses and this lacks is a 422 naming it (`variables.first_name`)."
)


class TemplateIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100, description=_NAME, examples=["welcome"])
    subject: str = Field(
        max_length=MAX_SUBJECT_SOURCE_CHARS, description=_SUBJECT,
        examples=["Welcome, {{ first_name }}!"],
    )  # fmt: skip
    text: str = Field(
        "", max_length=MAX_BODY_SOURCE_CHARS, description=_TEXT,
        examples=["Hello {{ first_name }},\nthanks for signing up."],
    )  # fmt: skip
    html: str = Field(
        "", max_length=MAX_BODY_SOURCE_CHARS, description=_HTML,
        examples=["<p>Hello {{ first_name }},</p><p>thanks for signing up.</p>"],
    )  # fmt: skip


class TemplatePut(Schema):
    """Every part, replaced (an absent text or html becomes empty); `name` renames it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100, description=f"A new name. {_NAME}")
    subject: str = Field(max_length=MAX_SUBJECT_SOURCE_CHARS, description=_SUBJECT)
    text: str = Field("", max_length=MAX_BODY_SOURCE_CHARS, description=_TEXT)
    html: str = Field("", max_length=MAX_BODY_SOURCE_CHARS, description=_HTML)


class TemplatePatch(Schema):
    """The fields given are changed; the others are kept."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100, description=f"A new name. {_NAME}")
    subject: str | None = Field(None, max_length=MAX_SUBJECT_SOURCE_CHARS, description=_SUBJECT)
    text: str | None = Field(None, max_length=MAX_BODY_SOURCE_CHARS, description=_TEXT)
    html: str | None = Field(None, max_length=MAX_BODY_SOURCE_CHARS, description=_HTML)


class TemplateSummaryOut(Schema):
    id: int
    name: str
    subject: str
    created_at: datetime
    updated_at: datetime


class TemplateOut(TemplateSummaryOut):
    text: str
    html: str
    variables: list[str] = Field(description="The top-level variables the template uses.")


class TemplateFilters(Schema):
    page: int = Field(1, ge=1, le=10_000_000)
    page_size: int = Field(10, ge=1, le=100)
    search: str = Field("", max_length=100, description="Part of the name, any case.")


class TemplatePage(Schema):
    count: int
    page: int
    page_size: int
    next: str | None
    previous: str | None
    results: list[TemplateSummaryOut]


class RenderIn(Schema):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(
        default_factory=dict, description=_VARIABLES, examples=[{"first_name": "Ann"}]
    )


class RenderOut(Schema):
    subject: str
    text: str = Field(description='The text part rendered; "" when the template has none.')
    html: str = Field(description='The HTML part rendered; "" when the template has none.')
