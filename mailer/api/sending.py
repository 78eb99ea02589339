"""Reading one send's body (EmailIn) into what the services take: the email, validated, and
the provider asked for. Shared by the single send (/emails) and the batch (/emails/batch), so
an item of a batch is read, and refused, exactly as the same email sent alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from mailer import selectors
from mailer.errors import InvalidInput
from mailer.models import ProviderConfig
from mailer.send_request import outgoing_email, request_fingerprint
from mailer.services.outgoing import schedule_time
from mailer.services.templates import template_render
from mailer.validation import Attachment, OutgoingEmail, decode_base64, invalid_text

from .schemas import EmailIn


@dataclass(frozen=True)
class SendRequest:
    """One email as asked for: validated, its requested provider resolved, and the template
    it names (with its variables) when it came from one."""

    outgoing: OutgoingEmail
    requested: ProviderConfig | None
    template: dict[str, Any] | None
    send_at: datetime | None = None  # None: now

    def fingerprint(self) -> str:
        """What an Idempotency-Key on this request stands for (request_fingerprint)."""
        return request_fingerprint(
            self.outgoing, self.requested, template=self.template, send_at=self.send_at
        )


def send_request(account, payload: EmailIn) -> SendRequest:
    """The send `payload` asks for. The email is validated before anything else reads it (the
    provider lookup, the fingerprint, storage): InvalidEmail names every bad field, then an
    unknown provider is an InvalidInput naming `provider`, a `send_at` too far ahead or without
    a time zone one naming `send_at`."""
    outgoing = _outgoing(account, payload)
    requested = _requested_provider(account, payload.provider)
    send_at = schedule_time(payload.send_at)
    template = None
    if payload.template is not None:
        template = {"name": payload.template, "variables": payload.variables}
    return SendRequest(outgoing, requested, template, send_at)


def _bodies(account, payload: EmailIn) -> dict[str, str]:
    """subject, text and html: as given, or rendered from the named template (its errors are
    422s naming the field: `template`, `variables.<name>`, the part and line at fault)."""
    if payload.template is None:
        if payload.variables:
            raise InvalidInput({"variables": ["variables need a template"]},
                               message="Give `template` with `variables`.")  # fmt: skip
        return {"subject": payload.subject, "text": payload.text, "html": payload.html}
    if payload.subject or payload.text or payload.html:
        raise InvalidInput(
            {"template": ["a template replaces subject, text and html: give one or the other"]},
            message="Send either a template or subject/text/html, not both.",
        )
    return template_render(
        account=account, name=payload.template, variables=payload.variables
    ).parts()


def _outgoing(account, payload: EmailIn) -> OutgoingEmail:
    """The email the payload asks for, validated: InvalidEmail names every bad field (attachment
    contents that are not base64 among them)."""
    bodies = _bodies(account, payload)
    attachments, problems = [], {}
    decode = len(payload.attachments) <= settings.MAX_ATTACHMENTS  # else refused by count
    for index, item in enumerate(payload.attachments):
        content = b""
        if decode:
            try:
                content = decode_base64(item.content)
            except ValueError as exc:
                problems.setdefault(f"attachments[{index}].content", []).append(str(exc))
        attachments.append(Attachment(item.filename, item.content_type, content, item.content))
    return outgoing_email(
        problems=problems,
        from_email=payload.from_,
        to=payload.to,
        cc=payload.cc,
        bcc=payload.bcc,
        reply_to=payload.reply_to,
        headers=payload.headers,
        attachments=attachments,
        metadata=payload.metadata,
        **bodies,
    )


def idempotency_key(header: str | None) -> str:
    """The Idempotency-Key header's value ("" without one); InvalidInput when it can't be one."""
    key = (header or "").strip()
    if len(key) > 255:
        raise InvalidInput(
            {"Idempotency-Key": ["too long"]},
            message="Idempotency-Key must be at most 255 characters.",
        )
    if found := invalid_text(key):
        raise InvalidInput(
            {"Idempotency-Key": [f"contains {found}"]},
            message=f"Idempotency-Key can't contain {found}.",
        )
    return key


def _requested_provider(account, ref: int | str | None) -> ProviderConfig | None:
    if ref in (None, ""):
        return None
    requested = selectors.provider_resolve(account=account, ref=ref)
    if requested is None:
        choices = selectors.provider_choices(account=account)
        raise InvalidInput(
            {"provider": ["unknown provider"]},
            message=f"Unknown or disabled provider {ref!r}; choose one of: "
            f"{', '.join(choices) or 'none configured'}.",
        )
    return requested
