"""Request and response shapes of /api/v1/suppressions (pydantic, through django-ninja)."""

from datetime import datetime

from ninja import Field, Schema
from pydantic import ConfigDict, field_validator

from mailer.selectors.suppressions import MAX_SEARCH_CHARS
from mailer.validation import control_character
from mailer.vocabulary import SuppressionReason


class SuppressionFilters(Schema):
    page: int = Field(1, ge=1, le=10_000_000)
    page_size: int = Field(10, ge=1, le=100)
    search: str = Field(
        "", max_length=MAX_SEARCH_CHARS, description="Part of the address, any case."
    )
    reason: SuppressionReason | None = None

    @field_validator("search")
    @classmethod
    def _search_text(cls, value: str) -> str:
        if problem := control_character(value):
            raise ValueError(f"search can't contain {problem}")
        return value


class SuppressionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(
        max_length=998, description="Kept lower-cased, without a display name.",
        examples=["ann@example.org"],
    )  # fmt: skip
    reason: SuppressionReason = SuppressionReason.MANUAL
    expires_at: datetime | None = Field(
        None,
        description="When the address may be sent to again (ISO 8601, in the future; without "
        "an offset it is UTC). Default: never.",
        examples=["2030-01-31T12:00:00Z"],
    )


class SuppressionOut(Schema):
    address: str
    reason: SuppressionReason
    source: str = Field(description="The provider that reported it, `api`, `web` or `import`.")
    created_at: datetime
    expires_at: datetime | None
    active: bool = Field(description="Whether sends to it are refused now (not expired).")


class SuppressionPage(Schema):
    count: int
    page: int
    page_size: int
    next: str | None
    previous: str | None
    results: list[SuppressionOut]


class SuppressionImportOut(Schema):
    rows: int = Field(description="Addresses read from the file.")
    added: int = Field(description="Of those, how many were not on the list before.")
