"""SendGrid's Signed Event Webhook: verify a request, normalize its events.

Followed:
- Signature: "Getting Started with the Event Webhook Security Features"
  (twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features):
  X-Twilio-Email-Event-Webhook-Signature is a base64 DER ECDSA signature, made with SendGrid's
  P-256 key over SHA-256 of X-Twilio-Email-Event-Webhook-Timestamp (unix seconds) followed by
  the raw body; SendGrid shows the public key as base64 DER (SubjectPublicKeyInfo).
- Events: "Event Webhook Reference" (twilio.com/docs/sendgrid/for-developers/tracking-events/event):
  a JSON array of {email, timestamp, event, sg_event_id, sg_message_id, ...} with custom_args at
  the top level; a bounce's `type` is "bounce" or "blocked", its `bounce_classification` one of
  SendGrid's seven classes ("Bounce and Block Classifications",
  docs.sendgrid.com/ui/analytics-and-reporting/bounce-and-block-classifications); sg_message_id
  may be absent from an asynchronous bounce.

The check itself is the SDK's (sendgrid.helpers.eventwebhook.EventWebhook, verified here with
`cryptography` keys), with what it leaves out done first: it decodes the signature leniently
(skipping non-base64 characters) and lets a bad padding escape as binascii.Error, takes the
payload as text, and accepts a key of any curve.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from ..events import (
    MAX_DETAIL,
    MAX_EVENTS,
    BounceType,
    Event,
    Events,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)

MAX_SIGNATURE = 200  # base64 of a DER P-256 signature is at most 96 characters
_TIMESTAMP = re.compile(r"\d{1,11}")  # up to the year 5138: datetime takes it
_PEM_ARMOR = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")
_CHECK = EventWebhook()  # holds no key: each config passes its own

# SendGrid's event name -> ours. Not here, skipped: processed (accepted, not yet sent),
# group_resubscribe, account events and any name SendGrid adds later.
TYPES = {
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,
    "dropped": EventType.DROPPED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
}

# Which bounce_classification says about the address. "Invalid Address" (no such mailbox, bad
# syntax) is hard whatever the type; the others are about the mailbox's state, our content,
# reputation, volume or a technical fault: the address may take the next message (or another
# provider's), so soft. "Unclassified" or none: SendGrid's own type decides.
HARD_CLASSES = frozenset({"Invalid Address"})
SOFT_CLASSES = frozenset(
    {"Mailbox Unavailable", "Content", "Reputation", "Frequency or Volume", "Technical"}
)

# Which optional fields each event's detail keeps, as (SendGrid's name, ours).
DETAIL_FIELDS = {
    "delivered": (("response", "response"),),
    "deferred": (("response", "response"), ("attempt", "attempt")),
    "bounce": (
        ("type", "bounce_type"),
        ("bounce_classification", "classification"),
        ("status", "status"),
        ("reason", "reason"),
    ),
    "dropped": (("reason", "reason"),),
    "open": (("sg_machine_open", "machine_open"),),
    "click": (("url", "url"),),
    "group_unsubscribe": (("asm_group_id", "asm_group_id"),),
}


def key_text(value: str) -> str:
    """The base64 of a pasted key: without spaces, or the PEM armor around it."""
    return "".join(_PEM_ARMOR.sub("", value).split())


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The P-256 key from SendGrid's base64 DER text, via the SDK's converter; ValueError
    (never naming the value) for anything else."""
    text = key_text(value)
    try:
        base64.b64decode(text, validate=True)
        key = _CHECK.convert_public_key_to_ecdsa(text)
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("is not an ECDSA P-256 public key in base64, as SendGrid shows it.")
    return key


def _signature(request: WebhookRequest) -> str:
    """The signature header, re-encoded after a strict decode (see the module docstring)."""
    given = (request.headers.get(EventWebhookHeader.SIGNATURE) or "").strip()
    if not given:
        raise Unauthenticated("sendgrid: the request is not signed")
    try:
        raw = base64.b64decode(given, validate=True) if len(given) <= MAX_SIGNATURE else b""
    except binascii.Error:
        raw = b""
    if not raw:
        raise Unauthenticated("sendgrid: the signature header is not a base64 signature")
    return base64.b64encode(raw).decode("ascii")


def _timestamp(request: WebhookRequest) -> str:
    given = (request.headers.get(EventWebhookHeader.TIMESTAMP) or "").strip()
    if not _TIMESTAMP.fullmatch(given):
        raise Unauthenticated("sendgrid: the signed timestamp is missing or not unix seconds")
    return given


class SendGridEvents(Events):
    kind = "sendgrid"

    def verify(self, request: WebhookRequest) -> None:
        try:
            key = load_public_key(self.secret("webhook_public_key"))
        except ValueError:
            raise Unauthenticated("sendgrid: webhook_public_key is not a P-256 key") from None
        signature, timestamp = _signature(request), _timestamp(request)
        self.check_fresh(datetime.fromtimestamp(int(timestamp), UTC))
        try:
            # SendGrid signs the UTF-8 JSON body; decoding strictly and encoding again (as the
            # SDK does) gives back the very bytes, and a body that isn't UTF-8 was never signed.
            payload = request.body.decode("utf-8")
            valid = _CHECK.verify_signature(payload, signature, timestamp, public_key=key)
        except (UnicodeDecodeError, ValueError):
            valid = False
        if not valid:
            raise Unauthenticated("sendgrid: the signature does not match")
        # Replays are recognized by what was signed, not by the signature's text: an ECDSA
        # signature (r, s) has a twin (r, n - s) that verifies as well, so the same request
        # could come back under another signature.
        signed = hashlib.sha256(timestamp.encode("ascii") + request.body).hexdigest()
        self.check_not_replayed(signed)

    def parse(self, request: WebhookRequest) -> list[Event]:
        try:
            items = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Malformed("sendgrid: the body is not JSON") from None
        if not isinstance(items, list):
            raise Malformed("sendgrid: the body is not a JSON array of events")
        if len(items) > MAX_EVENTS:
            raise Malformed(f"sendgrid: more than {MAX_EVENTS} events in one request")
        events = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                raise Malformed(f"sendgrid: event {index} is not an object with an event name")
            if item["event"] in TYPES:
                events.append(_event(item, index))
        return events


# One event ------------------------------------------------------------------------------------


def _event(item: dict[str, Any], index: int) -> Event:
    name = item["event"]
    event_type = TYPES[name]
    return Event(
        type=event_type,
        recipient=_required(item, "email", index, 320),
        occurred_at=_occurred_at(item, index),
        provider_event_id=_required(item, "sg_event_id", index, 255),
        provider_message_id=_message_id(item, index),
        email_id=_email_id(item),
        bounce_type=_bounce_type(item) if event_type is EventType.BOUNCED else None,
        detail=_detail(item),
    )


def _required(item: dict[str, Any], field: str, index: int, max_length: int) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise Malformed(f"sendgrid: event {index} has no valid {field}")
    return value


def _occurred_at(item: dict[str, Any], index: int) -> datetime:
    value = item.get("timestamp")
    try:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return datetime.fromtimestamp(value, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Malformed(f"sendgrid: event {index} has no valid timestamp") from None


def _message_id(item: dict[str, Any], index: int) -> str:
    """Our transport stores the X-Message-Id header of SendGrid's 202 answer; events carry it as
    sg_message_id "<X-Message-Id>.<filter suffix>", e.g. "A6FilwaAR_Wm_VTCEFql_w" +
    ".filterdrecv-66949dbc98-fvstg-1-648215A4-1D.0" (newer: ".recvd-..."). The suffix names the
    SendGrid server that handled the message: cut it off so the two compare. Older ids had dots
    of their own ("14c5d75ce93.dfd.64b469.filter0001..."), so the suffix is found by its name
    first, by the first dot otherwise. An asynchronous bounce may carry none."""
    value = item.get("sg_message_id")
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise Malformed(f"sendgrid: event {index} has an sg_message_id that is not text")
    marker = re.search(r"\.(?:filter|recvd)", value)
    message_id = value[: marker.start()] if marker else value.split(".", 1)[0]
    if not message_id or len(message_id) > 255:
        raise Malformed(f"sendgrid: event {index} has no valid sg_message_id")
    return message_id


def _email_id(item: dict[str, Any]) -> str:
    """Ours, from the custom_args the transport set (echoed at the top level). Mail others send
    through the same SendGrid account may carry anything there: then it is not ours."""
    value = item.get("email_id")
    return value if isinstance(value, str) and 0 < len(value) <= 64 else ""


def _bounce_type(item: dict[str, Any]) -> BounceType:
    classification = item.get("bounce_classification")
    if classification in HARD_CLASSES:
        return BounceType.HARD
    if classification in SOFT_CLASSES:
        return BounceType.SOFT
    # "bounce": the receiving server refused for good (SendGrid suppresses the address);
    # "blocked" (SendGrid's word for a soft bounce) or anything else: temporary.
    return BounceType.HARD if item.get("type") == "bounce" else BounceType.SOFT


def _detail(item: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = {"event": item["event"]}
    for theirs, ours in DETAIL_FIELDS.get(item["event"], ()):
        value = item.get(theirs)
        if isinstance(value, bool):
            detail[ours] = value
        elif isinstance(value, int | str) and value != "":
            detail[ours] = str(value)[:MAX_DETAIL]
    return detail
