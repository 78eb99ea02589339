"""Resend's webhooks: Svix (Standard Webhooks) signatures checked, email.* events normalized.

Followed:
- https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests: Resend posts through Svix;
  `svix-id`, `svix-timestamp` (unix seconds) and `svix-signature` ("v1,<base64>" entries separated
  by spaces, several while a secret is rotated) sign "{svix-id}.{svix-timestamp}.{raw body}" with
  HMAC-SHA256 keyed by the base64 part of the "whsec_..." secret (the Standard Webhooks scheme; its
  published example is a test here).
- https://resend.com/docs/webhooks/event-types and /docs/webhooks/emails/<type>, with the official
  SDK's WebhookEventPayload (resend-node, src/webhooks/interfaces/webhook-event.interface.ts):
  {"type", "created_at", "data": {"email_id", "from", "to": [...], "subject", "tags": {name: value},
  "bounce": {"type", "subType", "message"}, "click": {"link", ...}, "failed": {"reason"},
  "suppressed": {"type", "message"}}}. The docs show `tags` as an object; some of Resend's own
  examples (resend-webhooks-ingester's fixtures) send the list [{name, value}] the send API takes,
  so both are read. Bounce types: "Permanent" is a hard bounce, "Transient" and "Undetermined" soft.

Why the signature is not checked by standardwebhooks' Webhook.verify: it compares the timestamp
with datetime.now() inside a private method, with no way to give it our clock (`self.now`, which
tests move), and it raises ValueError or binascii.Error instead of its own error for a signature
entry without a comma or with broken base64. So the library's public `sign()` makes the expected
signature (secret decoding, signed content, HMAC, base64) and this module parses the headers,
checks freshness with check_fresh and compares with hmac.compare_digest.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from ..events import (
    MAX_DETAIL,
    BounceType,
    Event,
    Events,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from .transport import _TAG_VALUE

# Resend's email events, as ours. email.sent and email.scheduled say nothing past hand-off,
# email.received is inbound mail; contact.*, domain.*, suppression.*, inbox.* and any type not
# listed are skipped.
EVENT_TYPES: dict[str, EventType] = {
    "email.delivered": EventType.DELIVERED,
    "email.delivery_delayed": EventType.DEFERRED,
    "email.bounced": EventType.BOUNCED,
    "email.complained": EventType.COMPLAINED,
    "email.opened": EventType.OPENED,
    "email.clicked": EventType.CLICKED,
    "email.failed": EventType.DROPPED,  # Resend could not send it (quota, domain, key)
    "email.suppressed": EventType.DROPPED,  # not sent: the address is on Resend's suppression list
}

MAX_RECIPIENTS = 1000  # bounded work per request (Resend itself takes at most 50 per email)
MAX_EVENT_ID = 255  # DeliveryEvent.provider_event_id
MAX_SIGNATURES = 10  # "v1,..." entries in one header: Svix sends one per active secret
_SVIX_ID = re.compile(r"[\x21-\x7e]{1,128}")  # Svix's "msg_<ksuid>", printable ASCII
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,10}")  # unix seconds, as Svix writes them


class ResendEvents(Events):
    kind = "resend"

    def verify(self, request: WebhookRequest) -> None:
        signer = self._signer()
        svix_id = _svix_id(request, Unauthenticated)
        stamp = str(request.headers.get("svix-timestamp") or "").strip()
        if not _TIMESTAMP.fullmatch(stamp):
            raise Unauthenticated(
                "resend: the svix-timestamp header is missing or not unix seconds"
            )
        signed_at = datetime.fromtimestamp(int(stamp), UTC)
        offered = str(request.headers.get("svix-signature") or "").split()
        if not offered:
            raise Unauthenticated("resend: the request carries no svix-signature")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unauthenticated("resend: the body is not UTF-8, so not Resend's JSON") from None
        # sign() writes the timestamp back as whole seconds: the header's own digits.
        expected = signer.sign(msg_id=svix_id, timestamp=signed_at, data=body).encode()
        if not any(
            hmac.compare_digest(expected, entry.encode()) for entry in offered[:MAX_SIGNATURES]
        ):
            raise Unauthenticated(
                "resend: no v1 signature matches this request (forged or altered)"
            )
        self.check_fresh(signed_at)
        self.check_not_replayed(svix_id)

    def _signer(self) -> Webhook:
        """The library's signer for the config's whsec_ secret; a secret that doesn't decode
        verifies nothing (its value never goes in the message)."""
        try:
            return Webhook(self.secret("webhook_secret"))
        except (binascii.Error, ValueError, EmptyWebhookSecretError):
            raise Unauthenticated(
                "resend: the webhook_secret is not a Resend signing secret (whsec_...)"
            ) from None

    def parse(self, request: WebhookRequest) -> list[Event]:
        payload = _json_object(request.body)
        name = payload.get("type")
        if not isinstance(name, str):
            raise Malformed("resend: the event has no type")
        event_type = EVENT_TYPES.get(name)
        if event_type is None:
            return []
        data = payload.get("data")
        if not isinstance(data, dict):
            raise Malformed(f"resend: {name} has no data object")
        occurred_at = _utc(payload.get("created_at"))
        recipients = _recipients(data.get("to"))
        # data.email_id is the "id" of the POST /emails answer, which the transport's
        # message_id() stores: the same Resend email id on both sides.
        message_id = data.get("email_id")
        if not isinstance(message_id, str) or not message_id or len(message_id) > 255:
            raise Malformed(f"resend: {name} has no email_id")
        svix_id = _svix_id(request, Malformed)
        shared = {
            "type": event_type,
            "occurred_at": occurred_at,
            "provider_message_id": message_id,
            "email_id": _our_email_id(data.get("tags")),
            "bounce_type": _bounce_type(data) if event_type is EventType.BOUNCED else None,
            "detail": _detail(name, data),
        }
        return [
            Event(recipient=address, provider_event_id=_event_id(svix_id, address), **shared)
            for address in recipients
        ]


# Headers and body -------------------------------------------------------------------------


def _svix_id(request: WebhookRequest, error: type[Exception]) -> str:
    """The Svix message id: the same on each of Svix's retries of one event."""
    value = str(request.headers.get("svix-id") or "").strip()
    if not _SVIX_ID.fullmatch(value):
        raise error("resend: the svix-id header is missing or not a Svix message id")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise Malformed("resend: the body is not JSON") from None
    if not isinstance(payload, dict):
        raise Malformed("resend: the body is not a JSON object")
    return payload


def _utc(value: Any) -> datetime:
    """The event's created_at, ISO 8601 with its offset ("2024-11-22T23:41:12.126Z")."""
    if not isinstance(value, str) or len(value) > 64:
        raise Malformed("resend: the event has no created_at")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed("resend: created_at is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise Malformed("resend: created_at has no UTC offset")
    return at.astimezone(UTC)


def _recipients(value: Any) -> list[str]:
    """data.to, bare addresses (the transport sends "Name <address>"), each once."""
    if not isinstance(value, list) or not value:
        raise Malformed("resend: the event has no recipients (data.to)")
    if len(value) > MAX_RECIPIENTS:
        raise Malformed(f"resend: more than {MAX_RECIPIENTS} recipients in one event")
    found: dict[str, str] = {}  # by the address in lower case, as the service stores it
    for entry in value:
        address = parseaddr(entry)[1] if isinstance(entry, str) and len(entry) <= 1000 else ""
        if "@" not in address or len(address) > 320:
            raise Malformed("resend: data.to holds something that is not an address")
        found.setdefault(address.lower(), address)
    return list(found.values())


def _event_id(svix_id: str, recipient: str) -> str:
    """One event per recipient: Svix's id is per request, stable across its retries."""
    found = f"{svix_id}:{recipient}"
    if len(found) > MAX_EVENT_ID:
        found = f"{svix_id}:{hashlib.sha256(recipient.encode()).hexdigest()}"
    return found


# Data -----------------------------------------------------------------------------------


def _our_email_id(tags: Any) -> str:
    """The "email_id" tag the transport sends ([{name, value}]), echoed as the object
    {name: value} the docs show or as the list itself; "" when absent (site mail)."""
    if tags is None:
        return ""
    if isinstance(tags, dict):
        value = tags.get("email_id")
    elif isinstance(tags, list) and all(isinstance(tag, dict) for tag in tags):
        value = next((tag.get("value") for tag in tags if tag.get("name") == "email_id"), None)
    else:
        raise Malformed("resend: data.tags is neither an object nor a list of tags")
    return value if isinstance(value, str) and _TAG_VALUE.fullmatch(value) else ""


def _part(data: dict[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
    """An event's own object (bounce, click, failed, suppressed)."""
    value = data.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"resend: data.{name} is not an object")
    return value


def _bounce_type(data: dict[str, Any]) -> BounceType:
    kind = _part(data, "bounce", required=True).get("type")
    if not isinstance(kind, str):
        raise Malformed("resend: data.bounce has no type")
    return BounceType.HARD if kind.lower() == "permanent" else BounceType.SOFT


def _detail(name: str, data: dict[str, Any]) -> dict[str, str]:
    """What Resend said, small: its event name, the bounce's type, subtype and message, the
    reason a send failed or was suppressed, the clicked link."""
    bounce, click = _part(data, "bounce"), _part(data, "click")
    failed, suppressed = _part(data, "failed"), _part(data, "suppressed")
    found = {
        "event": name,
        "bounce_type": bounce.get("type"),
        "bounce_subtype": bounce.get("subType"),
        "diagnostic": bounce.get("message") or suppressed.get("message"),
        "code": _joined(bounce.get("diagnosticCode")),
        "reason": failed.get("reason") or suppressed.get("type"),
        "url": click.get("link"),
    }
    return {
        key: value[:MAX_DETAIL] for key, value in found.items() if isinstance(value, str) and value
    }


def _joined(value: Any) -> Any:
    """diagnosticCode, where Resend sends it: a list of SMTP replies, or one."""
    if isinstance(value, list):
        return "; ".join(str(entry) for entry in value[:10] if isinstance(entry, str))
    return value
