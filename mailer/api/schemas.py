"""Request and response shapes of the API (pydantic, through django-ninja)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict, field_validator

# Ids are 64-bit in every database we run on; larger numbers are a 422, not a database error.
DbId = Annotated[int, Field(ge=1, le=2**63 - 1)]
EmailStatusName = Literal["queued", "sending", "sent", "failed"]
Outcome = Literal["sent", "rejected", "provider_error", "ambiguous", "skipped"]


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


class AttachmentIn(Schema):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=255)
    content: str = Field(description="The file's bytes, base64-encoded (standard alphabet).")


class EmailIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", max_length=320, examples=["Shop <shop@example.com>"])
    to: list[str] = Field(description="One address or a list.", examples=[["ann@example.org"]])
    cc: list[str] = []
    bcc: list[str] = []
    reply_to: list[str] = []
    subject: str = Field("", max_length=998)
    text: str = ""
    html: str = ""
    attachments: list[AttachmentIn] = Field([], max_length=100)
    provider: DbId | str | None = Field(
        None, description="Provider to try first: its id, name or kind; default: by priority."
    )
    headers: dict[str, str] = {}
    metadata: dict[str, Any] = {}

    _lists = field_validator("to", "cc", "bcc", "reply_to", mode="before")(_as_list)


class ProviderRef(Schema):
    id: int | None
    kind: str
    name: str


class AttemptOut(Schema):
    provider: ProviderRef
    outcome: Outcome
    error_code: str
    error_message: str
    provider_message_id: str
    started_at: datetime
    duration_ms: int


class AttachmentOut(Schema):
    filename: str
    content_type: str
    size: int


class EmailSummaryOut(Schema):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    status: EmailStatusName
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    requested_provider: ProviderRef | None
    sent_via: ProviderRef | None
    provider_message_id: str
    message_id: str
    failure_reason: str
    possible_duplicate: bool
    created_at: datetime
    sent_at: datetime | None


class EmailOut(EmailSummaryOut):
    reply_to: list[str]
    text: str
    html: str
    headers: dict[str, str]
    metadata: dict[str, Any]
    attachments: list[AttachmentOut]
    updated_at: datetime
    attempts: list[AttemptOut]


class EmailPage(Schema):
    count: int
    page: int
    page_size: int
    next: str | None
    previous: str | None
    results: list[EmailSummaryOut]


class FieldError(Schema):
    field: str
    message: str


class Problem(Schema):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
