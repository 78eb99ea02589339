"""Request and response shapes of the API (pydantic, through django-ninja)."""

from datetime import datetime
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import ConfigDict, field_validator

from mailer.models import MAX_ID
from mailer.providers import specs
from mailer.validation import control_character
from mailer.vocabulary import CircuitState, DeliveryState, EmailStatus, EventType, Outcome

# Ids are 64-bit in every database we run on; larger numbers are a 422, not a database error.
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


# Sizes, counts and characters are checked by mailer.validation, with the limits of the settings
# (README: Input limits), the same for every way an email comes in.


class AttachmentIn(Schema):
    filename: str = Field(min_length=1, description="At most MAX_FILENAME_CHARS (255).")
    content_type: str = Field("application/octet-stream", max_length=255)
    content: str = Field(description="The file's bytes, base64-encoded (standard alphabet).")


class EmailIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", max_length=320, examples=["Shop <shop@example.com>"])
    to: list[str] = Field(description="One address or a list.", examples=[["ann@example.org"]])
    cc: list[str] = []
    bcc: list[str] = []
    reply_to: list[str] = []
    subject: str = Field("", description="At most MAX_SUBJECT_CHARS (998) characters.")
    text: str = ""
    html: str = ""
    attachments: list[AttachmentIn] = Field([], description="At most MAX_ATTACHMENTS (20).")
    provider: DbId | Annotated[str, Field(max_length=100)] | None = Field(
        None, description="Provider to try first: its id, name or kind; default: by priority."
    )
    headers: dict[str, str] = Field(
        {},
        description="Custom headers (at most MAX_HEADERS, 20; values at most "
        "MAX_HEADER_VALUE_CHARS, 998): X- headers other than providers' control headers "
        "(X-SMTPAPI, X-SES-*, X-Mailgun-*, ...), and List-Unsubscribe, List-Unsubscribe-Post, "
        "List-Id, In-Reply-To, References, Keywords, Comments, Auto-Submitted, Precedence, "
        "Importance, Priority.",
    )
    metadata: dict[str, Any] = Field(
        {},
        description="Stored with the email, never sent: at most MAX_METADATA_BYTES (8192) as "
        "JSON, MAX_METADATA_KEYS (50) keys and MAX_METADATA_DEPTH (5) levels.",
    )
    template: str | None = Field(
        None,
        max_length=100,
        description="Name of one of the account's templates (/api/v1/templates): its subject, "
        "text and HTML, rendered with `variables`, instead of `subject`, `text` and `html`. The "
        "email keeps the rendered result.",
    )
    variables: dict[str, Any] = Field(
        {}, description="The template's variables (a JSON object of at most 64 KiB)."
    )
    send_at: datetime | None = Field(
        None,
        description="Send later: an ISO 8601 time with its time zone, at most "
        "SCHEDULE_MAX_DAYS (30) days ahead. The email is stored `scheduled` and sent within "
        "one sweep interval after it; it can be canceled until then. A time not in the future "
        "sends now.",
        examples=["2026-12-24T09:00:00Z"],
    )

    _lists = field_validator("to", "cc", "bcc", "reply_to", mode="before")(_as_list)

    @field_validator("provider")
    @classmethod
    def _provider_text(cls, value: Any) -> Any:
        if isinstance(value, str) and (problem := control_character(value)):
            raise ValueError(f"a provider's id, name or kind can't contain {problem}")
        return value


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
    try_number: int = Field(description="Which delivery try it belongs to (queue mode retries)")


class AttachmentOut(Schema):
    filename: str
    content_type: str
    size: int


class EmailSummaryOut(Schema):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    status: EmailStatus
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
    delivery: DeliveryState = Field(
        description="After hand-off, from the providers' events: unknown (none yet, or a kind "
        "that reports none), delivered, partially_delivered, bounced or complained."
    )
    suppressed: list[str] = Field(
        description="Recipients left out before any provider was contacted: on the account's "
        "suppression list."
    )
    created_at: datetime
    sent_at: datetime | None
    tries: int = Field(description="Delivery tries started")
    next_attempt_at: datetime | None = Field(
        description="Queue mode: when a queued email is due for its next try"
    )
    send_at: datetime | None = Field(
        None, description="A scheduled send's time: it is not tried before it."
    )


class RecipientState(Schema):
    state: EventType
    at: datetime
    provider: str


class EventOut(Schema):
    type: EventType
    recipient: str
    occurred_at: datetime
    bounce_type: str | None
    provider: ProviderRef
    detail: dict[str, Any]


class EmailOut(EmailSummaryOut):
    resent_from: int | None = Field(
        None, description="A resend: the id of the failed email it sends again."
    )
    resends: list[int] = Field([], description="The ids of this email's resends, oldest first.")
    reply_to: list[str]
    text: str
    html: str
    headers: dict[str, str]
    metadata: dict[str, Any]
    attachments: list[AttachmentOut]
    updated_at: datetime
    attempts: list[AttemptOut]
    recipient_states: dict[str, RecipientState] = Field(
        description="Per recipient, the latest meaningful event a provider reported."
    )
    copies_sent: int | None = Field(
        description="After an ambiguous attempt: how many providers took this email (the one "
        "that accepted it and each ambiguous one that reported events for it), once an "
        "ambiguous attempt's provider reported; else null."
    )
    events: list[EventOut] = Field(description="What the providers reported, oldest first.")


class EmailPage(Schema):
    count: int = Field(description="The emails matching the filters (see count_exact).")
    count_exact: bool = Field(
        description="False when count is not exact: past 10,000 matching emails the count is "
        "counted once and reused for up to 60 seconds, so it may lag the newest emails."
    )
    page: int | None = Field(description="The page's number; null on a cursor page.")
    page_size: int
    next: str | None = Field(
        description="The next page's URL: by number on a numbered page, by cursor on a cursor "
        "page; null at the end."
    )
    previous: str | None = Field(description="The previous page's URL; null on cursor pages.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the emails after this page's last one (a walk that "
        "emails stored meanwhile never make skip or repeat one); null at the end."
    )
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


# Providers ------------------------------------------------------------------------------------


def _kinds_help() -> tuple[str, str, str]:
    """The kinds, and each kind's settings and secrets (`?` optional), from the registry."""
    kinds = specs().values()
    names = ", ".join(spec.kind for spec in kinds)
    settings = "; ".join(
        f"{spec.kind} {{{', '.join(o.summary() for o in spec.settings)}}}" for spec in kinds
    )
    secrets = "; ".join(
        f"{spec.kind} {{{', '.join(o.summary() for o in spec.secrets)}}}" for spec in kinds
    )
    return (
        f"One of: {names}.",
        f"Plain settings of the kind (defaults in brackets): {settings}.",
        f"Write-only, stored encrypted, never returned: {secrets}.",
    )


_KINDS_HELP, _SETTINGS_HELP, _SECRETS_HELP = _kinds_help()


class CircuitOut(Schema):
    state: CircuitState = Field(description="'unknown' only while the cache is unreachable.")
    consecutive_failures: int
    last_error: str
    last_error_at: datetime | None
    open_until: datetime | None
    paused_until: datetime | None = Field(
        description="Until when the provider is passed over after a throttling answer "
        "(its Retry-After, capped); its circuit stays closed."
    )


class ProviderIn(Schema):
    model_config = ConfigDict(extra="forbid")

    # Plain strings and dicts: mailer.provider_settings checks them and names each bad field.
    kind: str = Field(max_length=20, description=_KINDS_HELP, examples=["smtp"])
    name: str = Field(max_length=100, examples=["Gmail"])
    priority: int | None = Field(
        None, description="Failover order, lowest first; default: after the last one."
    )
    enabled: bool = True
    settings: dict[str, Any] = Field(
        {},
        description=_SETTINGS_HELP,
        examples=[{"host": "smtp.gmail.com", "port": 587, "security": "starttls"}],
    )
    secrets: dict[str, Any] = Field(
        {},
        description=_SECRETS_HELP,
        examples=[{"username": "me@gmail.com", "password": "app-password"}],
    )
    max_per_second: int | None = Field(
        None,
        strict=True,
        description="Pacing: at most this many a second (any 1-second span), shared by every "
        "process; in recipients for a kind that counts them (SES), else messages. null: none.",
    )
    max_per_day: int | None = Field(
        None,
        strict=True,
        description="Pacing: at most this many in any 24 hours (counted by the hour).",
    )


class ProviderPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(None, description="Can't change; accepted if it is the same.")
    name: str | None = Field(None, max_length=100)
    priority: int | None = None
    enabled: bool | None = None
    settings: dict[str, Any] | None = Field(
        None, description="The complete new settings (defaults fill what is left out)."
    )
    secrets: dict[str, Any] | None = Field(
        None, description='Merged into the stored secrets; "" or null removes one.'
    )
    max_per_second: int | None = Field(
        None,
        strict=True,
        description="Pacing: at most this many a second (any 1-second span), shared by every "
        "process; in recipients for a kind that counts them (SES), else messages. null removes it.",
    )
    max_per_day: int | None = Field(
        None, strict=True, description="Pacing: at most this many in any 24 hours; null removes it."
    )


class PacingUsage(Schema):
    last_second: int = Field(description="Used in the last second.")
    last_day: int = Field(description="Used in the last 24 hours (counted by the hour).")


class PacingOut(Schema):
    max_per_second: int | None
    max_per_day: int | None
    counts: str = Field(description="What the limits count: messages, or recipients (SES).")
    usage: PacingUsage | None = Field(
        description="Its use of the limits now; null without limits, or while the cache "
        "holding the counts is unreachable."
    )


class ProviderOut(Schema):
    id: int
    kind: str
    name: str
    priority: int
    enabled: bool
    settings: dict[str, Any]
    secrets_set: list[str] = Field(description="Names of the secrets stored, never values.")
    circuit: CircuitOut
    webhook_url: str | None = Field(
        description="Where to point this provider's event webhook (delivery, bounces, "
        "complaints); null for a kind that posts none (smtp). Unguessable: keep it private."
    )
    pacing: PacingOut
    created_at: datetime
    updated_at: datetime


class ProviderList(Schema):
    count: int
    results: list[ProviderOut] = Field(description="In failover order: priority, then id.")


class ProviderTestIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str | None = Field(None, max_length=320, description="Default: the account's email.")
    from_: str | None = Field(
        None, alias="from", max_length=320, description="Default: the site's DEFAULT_FROM_EMAIL."
    )


class ProviderTestOut(Schema):
    model_config = ConfigDict(populate_by_name=True)

    outcome: Outcome
    error_code: str
    error_message: str
    provider_message_id: str
    duration_ms: int
    to: str
    from_: str = Field(alias="from")
    circuit: CircuitOut
