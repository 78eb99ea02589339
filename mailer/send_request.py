"""A send request as every entry point (the API, the original contract, the send page) hands it
to the services: one OutgoingEmail from the entry's fields, and one idempotency fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from mailer.errors import MessageTooLarge
from mailer.models import ProviderConfig
from mailer.validation import InvalidEmail, OutgoingEmail, validate


def outgoing_email(
    *, problems: Mapping[str, list[str]] | None = None, **values: Any
) -> OutgoingEmail:
    """The email these values describe (OutgoingEmail's fields), validated before anything
    reads it. InvalidEmail names every bad field at once: validation's and the `problems` the
    entry point found reading its own input (an attachment that is not base64, an unknown
    sent_via), which win for a field both name. Too large (MessageTooLarge) is said only when
    nothing else is wrong."""
    outgoing = OutgoingEmail(**values)
    problems = dict(problems or {})
    try:
        validate(outgoing)
    except MessageTooLarge:
        if not problems:
            raise
    except InvalidEmail as exc:
        problems = {**exc.errors, **problems}
    if problems:
        raise InvalidEmail(problems)
    return outgoing


def request_fingerprint(
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None,
    *,
    template: Mapping[str, Any] | None = None,
    send_at: datetime | None = None,
) -> str:
    """What an Idempotency-Key stands for: a digest of the canonical JSON of the email and the
    provider asked for (attachments by their content's digest). The same email asked for again
    has the same one, whichever door it came by and however it named the provider. An email
    from a template (`template`: its name and variables) stands for those, not for what they
    rendered to: the same request repeated after the template was edited is the same request.
    """
    canonical: dict[str, Any] = {f.name: getattr(outgoing, f.name) for f in fields(outgoing)}
    if template is not None:
        for part in ("subject", "text", "html"):
            canonical.pop(part)
        canonical["template"] = dict(template)
    canonical["attachments"] = [
        {
            "filename": attachment.filename,
            "content_type": attachment.content_type,
            "sha256": hashlib.sha256(attachment.content).hexdigest(),
        }
        for attachment in outgoing.attachments
    ]
    canonical["provider"] = requested_provider.pk if requested_provider is not None else None
    if send_at is not None:  # a scheduled send is another request than the same email now
        canonical["send_at"] = send_at.isoformat()
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
