"""Mandrill's messages/send-raw over mailer.providers.net's HTTP client: the message as raw MIME,
the envelope beside it, each recipient's status read back.

Not through the mailchimp-transactional SDK: it posts with requests, which follows a redirect
with the key in the body, can't connect to an address checked beforehand, and retries itself.

Mandrill answers its errors with HTTP 500 and a body naming the error ({"status": "error",
"name": "Invalid_Key", ...}), so a refusal is read by its `name` before its status."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.mail import EmailMessage

from ..base import (
    AmbiguousDelivery,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
)
from ..http import HttpProvider, HttpRequest, clean_key
from ..httpclient import HttpAnswer
from ..message_parts import MIME_POLICY, envelope, metadata, mime_message, sender, split_address
from ..net import sanitize
from . import DEFAULT_API_URL

logger = logging.getLogger("mailer.providers")

# Raw MIME travels as a JSON string: 7-bit (base64 or quoted-printable bodies, RFC 2047
# headers) so nothing depends on how Mandrill reads 8-bit text; CRLF as SMTP would carry it.
MIME_7BIT = MIME_POLICY.clone(cte_type="7bit")

# Mandrill's error names, as documented for messages/send-raw. Any other name (GeneralError,
# ServiceUnavailable, RequestLimitExceeded, ...) is this provider's trouble: try the next one.
_ERRORS_BY_NAME: dict[str, type[ProviderError]] = {
    "Invalid_Key": ProviderAuthError,
    "PaymentRequired": ProviderAuthError,  # the account, not the message: the circuit opens
    "Unknown_Subaccount": ProviderAuthError,
    "ValidationError": MessageRejected,
}
ACCEPTED = frozenset({"sent", "queued", "scheduled"})
REFUSED = frozenset({"rejected", "invalid"})
# Reasons about the sender or the account, not the recipient: an unverified sending domain
# ("unsigned", like SES's unverified identity), a sender Mandrill refuses, a test key's limit.
# Another provider may deliver the same message, so these fail over instead of failing it.
SENDER_REASONS = frozenset({"unsigned", "invalid-sender", "test-mode-limit"})


# Payload -----------------------------------------------------------------------------------


def raw_mime(message: EmailMessage) -> str:
    """The message as Django's SMTP backend would send it, plus our metadata for Mandrill.

    send-raw takes no metadata field; Mandrill reads X-MC-Metadata (a JSON object) from a raw
    message as from SMTP, and returns it with every webhook event: that is how events find
    their email. A caller's own X-MC-Metadata keeps its keys; ours win on a clash."""
    mime = mime_message(message, MIME_7BIT)
    ours = dict(metadata(message))
    if ours:
        given = mime["X-MC-Metadata"]
        try:
            earlier = json.loads(str(given)) if given is not None else {}
        except ValueError:
            earlier = {}
        if isinstance(earlier, dict):
            ours = {**earlier, **ours}
        del mime["X-MC-Metadata"]
        mime["X-MC-Metadata"] = json.dumps(ours, separators=(",", ":"))
    return mime.as_bytes().decode("ascii")


def build_payload(message: EmailMessage, key: str) -> dict[str, Any]:
    """The messages/send-raw body. Synchronous (async false) so each recipient's status comes
    back; Mandrill itself queues messages for more than ten recipients."""
    raw_message = raw_mime(message)
    name, from_email = split_address(str(sender(message)), "from")
    payload: dict[str, Any] = {
        "key": key,
        "raw_message": raw_message,
        "from_email": from_email,
        "to": envelope(message),
        "async": False,
    }
    if name:
        payload["from_name"] = name
    return payload


# Answers -----------------------------------------------------------------------------------


def mandrill_error(body: bytes) -> tuple[str, str] | None:
    """(name, message) of Mandrill's error body, sanitized; None for any other body."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(data, dict) or data.get("status") != "error":
        return None
    name = sanitize(str(data.get("name") or ""), 60)
    return (name, sanitize(str(data.get("message") or ""))) if name else None


def recipient_results(body: bytes) -> list[dict[str, str]]:
    """The 200 answer's entries ({"email", "status", "reject_reason", "_id"}), as text.
    An answer that is not such a list is a partial answer: what was done is unknown."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        data = None
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise AmbiguousDelivery(
            "Mandrill answered 200 with a body that is not its list of recipients",
            code="unreadable",
        )
    keys = ("email", "status", "reject_reason", "_id")
    return [{k: sanitize(str(entry.get(k) or ""), 255) for k in keys} for entry in data]


def refusal_text(entries: list[dict[str, str]]) -> str:
    return "; ".join(
        f"{e['email']} {e['status']}" + (f" ({e['reject_reason']})" if e["reject_reason"] else "")
        for e in entries
    )


# Provider ----------------------------------------------------------------------------------


class MandrillProvider(HttpProvider):
    kind = "mandrill"
    default_base_url = DEFAULT_API_URL
    base_url_setting = "api_url"

    def __init__(self, *, api_key: str | None = None, api_url: str | None = None, **kwargs: Any):
        super().__init__(base_url=api_url, **kwargs)
        self.api_key = api_key

    def auth_headers(self) -> dict[str, str]:
        """None: Mandrill takes the key in the JSON body. Checked here all the same, so a
        config without one fails as a configuration error before anything is sent."""
        clean_key(self.kind, "api_key", self.api_key)
        return {}

    def prepare(self, message: EmailMessage) -> HttpRequest:
        key = clean_key(self.kind, "api_key", self.api_key)
        return HttpRequest.json("/messages/send-raw", build_payload(message, key))

    def message_id(self, answer: HttpAnswer) -> str:
        """The first accepted recipient's _id. A 200 may still refuse recipients one by one:
        refusing all of them fails the message (or, for a sender-side reason, this provider);
        refusing some is logged, as the others were sent."""
        entries = recipient_results(answer.body)
        accepted = [e for e in entries if e["status"] in ACCEPTED]
        refused = [e for e in entries if e["status"] in REFUSED]
        if accepted:
            if refused:
                logger.warning(
                    "%s sent message %s but refused some recipients: %s",
                    self.describe(),
                    accepted[0]["_id"],
                    refusal_text(refused),
                )
            return accepted[0]["_id"]
        if not refused:
            raise AmbiguousDelivery(
                f"{self.describe()} answered without a known status for any recipient",
                code="unreadable",
            )
        text = f"Mandrill refused every recipient: {refusal_text(refused)}"
        if any(e["reject_reason"] in SENDER_REASONS for e in refused):
            raise ProviderUnavailable(text, code="sender_refused")
        raise MessageRejected(text, code="recipients_refused")

    def refusal(self, answer: HttpAnswer) -> ProviderError:
        """Mandrill's error by its name, whatever the status (its errors come with HTTP 500);
        a redirect, a 429 or a body that is not Mandrill's are read as for any HTTP API."""
        error = mandrill_error(answer.body)
        if error is None or 300 <= answer.status < 400 or answer.status == 429:
            return super().refusal(answer)
        name, text = error
        cls = _ERRORS_BY_NAME.get(name, ProviderUnavailable)
        detail = f"{name}: {text}" if text else name
        return cls(f"HTTP {answer.status}: {detail}", code=name)
