"""Postmark's delivery events: one JSON record per POST, authenticated by HTTP Basic credentials.

Postmark signs nothing. Its webhooks are protected by the user name and password put in the
webhook URL given to Postmark (https://user:pass@host/...), which arrive as `Authorization:
Basic ...`; verify() compares both with this config's webhook_username and webhook_password.
That is all a request can be checked for:

- the body is not covered by the credentials: whoever knows them (or reads one request in
  clear; give Postmark an https URL) can post any event;
- nothing says when a request was made, so staleness can't be checked (an event's own time is
  no freshness: Postmark retries for hours and a bounce may come days after the send);
- there is no nonce, so a replayed request can't be told from Postmark's own retry, which
  carries the same credentials and body and must be taken. check_not_replayed is not used: a
  replay only re-posts an event already stored, which the event id dedupes (stored once).

Followed (payload shapes, field names per RecordType, bounce types):
  https://postmarkapp.com/developer/webhooks/webhooks-overview (Basic auth in the URL)
  https://postmarkapp.com/developer/webhooks/delivery-webhook
  https://postmarkapp.com/developer/webhooks/bounce-webhook
  https://postmarkapp.com/developer/webhooks/spam-complaint-webhook
  https://postmarkapp.com/developer/webhooks/open-tracking-webhook
  https://postmarkapp.com/developer/webhooks/click-webhook
  https://postmarkapp.com/developer/webhooks/subscription-change-webhook
  https://postmarkapp.com/developer/api/bounce-api#bounce-types
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

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
from ..net import sanitize

MAX_ADDRESS = 320  # RFC 5321's limit; the stored recipient holds no more
MAX_ID = 255

# RecordType -> (the recipient's field, the event's time field): the names differ per record.
RECORDS: dict[str, tuple[str, str]] = {
    "Delivery": ("Recipient", "DeliveredAt"),
    "Bounce": ("Email", "BouncedAt"),
    "SpamComplaint": ("Email", "BouncedAt"),
    "Open": ("Recipient", "ReceivedAt"),
    "Click": ("Recipient", "ReceivedAt"),
    "SubscriptionChange": ("Recipient", "ChangedAt"),
}

_HARD = (EventType.BOUNCED, BounceType.HARD)
_SOFT = (EventType.BOUNCED, BounceType.SOFT)
_DROPPED = (EventType.DROPPED, None)
# A Bounce record's Type (Postmark's list, with its TypeCode) -> what it means for us; None: not
# about this message's delivery, skipped. A Type not listed is read as a soft bounce: a bounce
# whose cause we can't tell must not put the address on the suppression list at once.
BOUNCE_TYPES: dict[str, tuple[EventType, BounceType | None] | None] = {
    "HardBounce": _HARD,  # 1: unknown user, mailbox not found
    "Transient": _SOFT,  # 2: message delayed / undeliverable for now
    "Unsubscribe": (EventType.UNSUBSCRIBED, None),  # 16: a reply asking to be removed
    "Subscribe": None,  # 32: a reply asking to be added
    "AutoResponder": None,  # 64: out of office: the message arrived
    "AddressChange": None,  # 128: an auto-reply announcing a new address
    "DnsError": _SOFT,  # 256: a temporary DNS error
    "SpamNotification": _SOFT,  # 512: a spam filter refused it; the address is fine
    "OpenRelayTest": None,  # 1024: the receiving server testing Postmark
    "Unknown": _SOFT,  # 2048: an NDR Postmark could not classify
    "SoftBounce": _SOFT,  # 4096: mailbox full, over quota, disabled for now
    "VirusNotification": _SOFT,  # 8192: refused as infected content
    "ChallengeVerification": None,  # 16384: a challenge-response filter asks the sender
    "BadEmailAddress": _HARD,  # 100000: not a valid address
    "SpamComplaint": (EventType.COMPLAINED, None),  # 100001
    "ManuallyDeactivated": _HARD,  # 100002: deactivated on Postmark's side, never sent to
    "Unconfirmed": _DROPPED,  # 100003: Postmark refused: registration not confirmed
    "Blocked": _SOFT,  # 100006: the receiving ISP blocked the sender, not the address
    "SMTPApiError": _DROPPED,  # 100007: Postmark refused it at its SMTP API
    "InboundError": None,  # 100008: inbound processing, not our outbound mail
    "DMARCPolicy": _SOFT,  # 100009: refused for the From domain's DMARC policy
    "TemplateRenderingFailed": _DROPPED,  # 100010: Postmark could not render it
}

# A SubscriptionChange that suppresses the address, by its SuppressionReason: a hard bounce or
# a complaint (a Broadcast stream reports complaints only this way) keeps its meaning; anything
# else (ManualSuppression, which is also what a recipient's unsubscribe is) is an unsubscribe.
SUPPRESSION_REASONS: dict[str, tuple[EventType, BounceType | None]] = {
    "HardBounce": _HARD,
    "SpamComplaint": (EventType.COMPLAINED, None),
}


class PostmarkEvents(Events):
    kind = "postmark"

    def verify(self, request: WebhookRequest) -> None:
        """The request's Basic credentials are this config's, both compared in constant time."""
        username = self.secret("webhook_username").encode("utf-8")
        password = self.secret("webhook_password").encode("utf-8")
        given_user, given_password = _basic_credentials(request.headers.get("Authorization"))
        same_user = hmac.compare_digest(given_user, username)
        same_password = hmac.compare_digest(given_password, password)
        if not (same_user & same_password):  # both compared, whichever differs
            raise Unauthenticated("postmark: the webhook's Basic credentials are not this config's")

    def parse(self, request: WebhookRequest) -> list[Event]:
        """The one event of a record; [] for a record with no meaning for delivery (inbound
        mail, a reactivation, an auto-reply, a RecordType Postmark adds later)."""
        record = _record(request.body)
        record_type = record.get("RecordType")
        if not isinstance(record_type, str):
            raise Malformed("postmark: the record has no RecordType")
        if record_type not in RECORDS:
            return []
        meaning = _meaning(record_type, record)
        if meaning is None:
            return []
        event_type, bounce_type, detail = meaning
        recipient_field, time_field = RECORDS[record_type]
        recipient = _text(record, recipient_field, limit=MAX_ADDRESS)
        stamp = _text(record, time_field, limit=100)
        return [
            Event(
                type=event_type,
                recipient=recipient,
                occurred_at=_instant(stamp, time_field),
                provider_event_id=_event_id(record_type, record, recipient, stamp),
                provider_message_id=_message_id(record),
                email_id=_email_id(record),
                bounce_type=bounce_type,
                detail=detail,
            )
        ]


# Authentication ------------------------------------------------------------------------------


def _basic_credentials(header: str | None) -> tuple[bytes, bytes]:
    """(user, password) of an `Authorization: Basic base64(user:password)` header, as bytes:
    compared as bytes, a non-ASCII credential can't make compare_digest raise."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthenticated("postmark: the request carries no HTTP Basic credentials")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthenticated("postmark: the Basic credentials are not base64") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise Unauthenticated("postmark: the Basic credentials are not user:password")
    return user, password


# The record ----------------------------------------------------------------------------------


def _record(body: bytes) -> dict[str, Any]:
    """The one JSON object Postmark posts. A list, of any length, is not what it sends."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeError, ValueError, RecursionError):
        raise Malformed("postmark: the body is not JSON") from None
    if not isinstance(data, dict):
        raise Malformed("postmark: the body is not one JSON object (Postmark posts one record)")
    return data


def _meaning(
    record_type: str, record: dict[str, Any]
) -> tuple[EventType, BounceType | None, dict[str, Any]] | None:
    """(type, bounce type, detail) of a record, or None where it means nothing for us."""
    if record_type == "Delivery":
        return EventType.DELIVERED, None, _detail(record, diagnostic="Details")
    if record_type == "Open":
        return EventType.OPENED, None, _detail(record, first_open="FirstOpen")
    if record_type == "Click":
        return EventType.CLICKED, None, _detail(record, url="OriginalLink")
    if record_type == "SubscriptionChange":
        return _suppression(record)
    bounce = _detail(
        record, type="Type", code="TypeCode", description="Description", diagnostic="Details"
    )
    if record_type == "SpamComplaint":
        return EventType.COMPLAINED, None, bounce
    kind = record.get("Type")
    if not isinstance(kind, str):
        raise Malformed("postmark: a Bounce record without its Type")
    meaning = BOUNCE_TYPES.get(kind, _SOFT)
    return None if meaning is None else (*meaning, bounce)


def _suppression(
    record: dict[str, Any],
) -> tuple[EventType, BounceType | None, dict[str, Any]] | None:
    """A SubscriptionChange: an address suppressed (SuppressSending true) or reactivated
    (false: nothing happened to any message, skipped)."""
    suppress = record.get("SuppressSending")
    if not isinstance(suppress, bool):
        raise Malformed("postmark: a SubscriptionChange without SuppressSending")
    if not suppress:
        return None
    reason = record.get("SuppressionReason")
    event_type, bounce_type = SUPPRESSION_REASONS.get(
        reason if isinstance(reason, str) else "", (EventType.UNSUBSCRIBED, None)
    )
    return event_type, bounce_type, _detail(record, reason="SuppressionReason", origin="Origin")


def _detail(record: dict[str, Any], **fields: str) -> dict[str, Any]:
    """Postmark's event name and the given fields (detail key=record field) that it filled in:
    text bounded and cleaned of control characters, numbers and flags as they are."""
    detail: dict[str, Any] = {"event": record["RecordType"]}
    for key, name in fields.items():
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            detail[key] = sanitize(value, MAX_DETAIL)
        elif isinstance(value, bool | int):
            detail[key] = value
    return detail


def _text(record: dict[str, Any], name: str, *, limit: int) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise Malformed(f"postmark: the record's {name} is missing or not text")
    return value.strip()


def _instant(stamp: str, name: str) -> datetime:
    """Postmark's ISO 8601 time, in UTC. Its examples carry Z or an offset; one without is read
    as UTC rather than losing the event."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise Malformed(f"postmark: the record's {name} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _event_id(record_type: str, record: dict[str, Any], recipient: str, stamp: str) -> str:
    """Bounce and SpamComplaint records carry their bounce's ID (one ID space: a complaint
    posted by both the bounce and the complaint webhook is one event). The others carry no id:
    a digest of what a retry repeats exactly (the time as Postmark wrote it, to its last digit;
    a click's link too, since two links may be clicked in the same instant)."""
    if record_type in ("Bounce", "SpamComplaint"):
        bounce_id = record.get("ID")
        if not isinstance(bounce_id, int) or isinstance(bounce_id, bool) or bounce_id < 0:
            raise Malformed(f"postmark: a {record_type} record without its numeric ID")
        return f"bounce:{bounce_id}"
    message_id = record.get("MessageID")
    parts = [record_type, message_id if isinstance(message_id, str) else "", recipient, stamp]
    if record_type == "Click" and isinstance(record.get("OriginalLink"), str):
        parts.append(record["OriginalLink"])
    digest = hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()
    return f"{record_type.lower()}:{digest}"


def _message_id(record: dict[str, Any]) -> str:
    """MessageID: the same value /email answered with, which the transport stored as the
    attempt's message id (PostmarkProvider.message_id reads the answer's MessageID and the
    pipeline keeps it sanitized, at most 255 characters: so is this). Null for a suppression
    made by hand, which is about no message."""
    value = record.get("MessageID")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_ID:
        raise Malformed("postmark: the record's MessageID is not a message id")
    return sanitize(value, MAX_ID)


def _email_id(record: dict[str, Any]) -> str:
    """Our email id, from the Metadata the transport sent and Postmark echoes (its values are
    text). Absent where the message had none (site mail) or for a hand-made suppression."""
    metadata = record.get("Metadata")
    if metadata is None:
        return ""
    if not isinstance(metadata, dict):
        raise Malformed("postmark: the record's Metadata is not an object")
    value = metadata.get("email_id")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_ID:
        raise Malformed("postmark: the Metadata's email_id is not text")
    return value
