"""Mandrill (Mailchimp Transactional) message-event webhooks: verified, then normalized.

Followed:
- "Webhooks" (https://mailchimp.com/developer/transactional/docs/webhooks/): one form-encoded
  POST parameter, `mandrill_events`, a JSON array of at most 1,000 events; message events
  send, deferral, hard_bounce, soft_bounce, delivered, open, click, spam, unsub, reject; sync
  events (allowlist/denylist, formerly whitelist/blacklist) carry `type` instead of `event`;
  inbound messages have `event: "inbound"`.
- "Authenticating webhook requests" (https://mailchimp.com/developer/transactional/guides/
  track-respond-activity-webhooks/#authenticating-webhook-requests): X-Mandrill-Signature is
  base64(HMAC-SHA1(webhook key, the webhook URL exactly as configured + each POST parameter,
  sorted by name, as name + value)).
- "Message Event Webhook Format" (mandrill.zendesk.com, article 205583307): `ts` is when the
  event occurred (integer UTC unix time), `url` the clicked link, `msg` the message as
  messages/info shows it: `_id`, `email` (the recipient), `metadata`, `state`, and for bounces
  `bounce_description`, `bgtools_code` and `diag`; `smtp_events` for deferrals. The top-level
  `_id` repeats msg._id: it names the message, not the event.

Replay and freshness. Mandrill signs no timestamp and no nonce: the signature covers the URL and
the body only, and the body's `ts` fields say when events happened, not when the batch was
posted. Mandrill batches events and retries a failed batch for a long time (hours), so refusing
events older than MAX_AGE would drop real retries. So events of any age are taken, and what
protects us is: the signature (nothing can be changed), the replay guard on the signature
itself (the same body always signs the same, so a copy is refused for REPLAY_WINDOW once its
events are stored), and, past that window, the provider_event_id dedupe (a replayed batch
stores nothing new). A side effect: Mandrill's own retry of a batch we stored but whose answer
it never got is refused for REPLAY_WINDOW, then taken and deduplicated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..events import (
    MAX_EVENTS,
    BounceType,
    Event,
    Events,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from ..net import sanitize

SIGNATURE_HEADER = "X-Mandrill-Signature"
FIELD = "mandrill_events"
DETAIL_LIMIT = 500
# Mandrill's message ids are 32 hex digits; anything of this shape is taken, nothing longer.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
# ts beyond this (year 2106) is not a unix time Mandrill would send.
_MAX_TS = 2**32
# Events about the delivery, whose SMTP diagnostic says why; an open or a click has none.
_DIAGNOSED = frozenset({"delivered", "deferral", "hard_bounce", "soft_bounce", "reject"})

# Mandrill's event name -> ours (bounce type for bounces). Not here, so skipped:
# - "send": Mandrill handed the message on ("message has been sent successfully"); whether the
#   recipient's server took it is the separate "delivered" event, so "send" is no delivery, and
#   the hand-off itself we know already (the attempt's `sent`);
# - "inbound" (a received message, not about ours), and any name Mandrill adds later.
EVENT_TYPES: dict[str, tuple[EventType, BounceType | None]] = {
    "delivered": (EventType.DELIVERED, None),
    "deferral": (EventType.DEFERRED, None),
    "hard_bounce": (EventType.BOUNCED, BounceType.HARD),
    "soft_bounce": (EventType.BOUNCED, BounceType.SOFT),
    "open": (EventType.OPENED, None),
    "click": (EventType.CLICKED, None),
    "spam": (EventType.COMPLAINED, None),
    "unsub": (EventType.UNSUBSCRIBED, None),
    "reject": (EventType.DROPPED, None),  # Mandrill refused to send (denylist, invalid, ...)
}


def signature(key: str, url: str, form: Mapping[str, list[str]]) -> str:
    """Mandrill's X-Mandrill-Signature for this URL and form. A repeated field is refused:
    Mandrill sends each parameter once, and which copy it signed could not be known."""
    signed = url
    for name in sorted(form):
        values = form[name]
        if len(values) != 1:
            raise Unauthenticated(f"mandrill: form field {name[:40]!r} is repeated")
        signed += name + values[0]
    digest = hmac.new(key.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class MandrillEvents(Events):
    kind = "mandrill"

    def verify(self, request: WebhookRequest) -> None:
        """The signature over the URL as received and the form, then the replay guard on it.
        The URL must be the one entered in Mandrill, byte for byte (scheme, host, port, query)."""
        key = self.secret("webhook_key")
        given = request.headers.get(SIGNATURE_HEADER) or ""
        if not given:
            raise Unauthenticated(f"mandrill: no {SIGNATURE_HEADER} header")
        expected = signature(key, request.url, request.form)
        if not hmac.compare_digest(expected.encode("ascii"), given.strip().encode("utf-8")):
            raise Unauthenticated(f"mandrill: {SIGNATURE_HEADER} does not match this request")
        self.check_not_replayed(expected)

    def parse(self, request: WebhookRequest) -> list[Event]:
        """One Event per message event we know; sync, inbound and unknown events skipped. An
        empty batch (Mandrill's test when a webhook is added) is no event."""
        events: list[Event] = []
        for item in batch(request):
            name = item.get("event")
            if name is None:
                if not isinstance(item.get("type"), str):
                    raise Malformed("mandrill: an event has neither `event` nor a sync `type`")
                continue  # an allowlist/denylist sync event: about addresses, not our emails
            if not isinstance(name, str):
                raise Malformed("mandrill: an event's `event` is not a name")
            if name in EVENT_TYPES:
                events.append(message_event(name, item))
        return events


# Reading ----------------------------------------------------------------------------------


def batch(request: WebhookRequest) -> list[dict[str, Any]]:
    """The `mandrill_events` array: each element an object, at most MAX_EVENTS of them."""
    values = request.form.get(FIELD)
    if not values or len(values) != 1:
        raise Malformed(f"mandrill: the form has no single {FIELD} field")
    try:
        data = json.loads(values[0])
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be Mandrill's
        raise Malformed(f"mandrill: {FIELD} is not JSON") from None
    if not isinstance(data, list):
        raise Malformed(f"mandrill: {FIELD} is not an array")
    if len(data) > MAX_EVENTS:
        raise Malformed(f"mandrill: {len(data)} events in one batch, more than {MAX_EVENTS}")
    if not all(isinstance(item, dict) for item in data):
        raise Malformed(f"mandrill: an element of {FIELD} is not an object")
    return data


def message_event(name: str, item: Mapping[str, Any]) -> Event:
    """One message event, normalized. Its message is `msg`, for one recipient (`msg.email`)."""
    msg = item.get("msg")
    if not isinstance(msg, dict):
        raise Malformed(f"mandrill: a {name} event has no `msg` object")
    recipient = msg.get("email")
    if not isinstance(recipient, str) or not 0 < len(recipient.strip()) <= 320:
        raise Malformed(f"mandrill: a {name} event has no recipient `msg.email`")
    message_id = msg.get("_id")
    if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
        raise Malformed(f"mandrill: a {name} event has no message id `msg._id`")
    ts = item.get("ts")
    if type(ts) is not int or not 0 <= ts < _MAX_TS:
        raise Malformed(f"mandrill: a {name} event's `ts` is not a unix time")
    event_type, bounce_type = EVENT_TYPES[name]
    return Event(
        type=event_type,
        recipient=recipient.strip(),
        occurred_at=datetime.fromtimestamp(ts, tz=UTC),
        provider_event_id=event_id(message_id, name, ts, item),
        # Mandrill's _id is per recipient: send-raw answers one per recipient and the
        # transport's message_id() keeps the first accepted one's. So this equals the stored
        # message id for that recipient's events; other recipients' events match by email_id.
        provider_message_id=message_id,
        email_id=our_email_id(msg),
        bounce_type=bounce_type,
        detail=detail(name, item, msg),
    )


def event_id(message_id: str, name: str, ts: int, item: Mapping[str, Any]) -> str:
    """Mandrill gives events no id of their own (the top-level _id is the message's), so an
    event is its message, its name and its second: the same in every retry of a batch. A click
    adds its URL's digest, as two links of one message may be clicked within a second."""
    key = f"{message_id}:{name}:{ts}"
    url = item.get("url")
    if name == "click" and isinstance(url, str):
        key += ":" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return key


def our_email_id(msg: Mapping[str, Any]) -> str:
    """Our email id as the transport put it in X-MC-Metadata. Mandrill may send an empty
    metadata as [] (or none at all, for mail not sent by us): no id then."""
    metadata = msg.get("metadata")
    value = metadata.get("email_id") if isinstance(metadata, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return sanitize(str(value), 100)


def detail(name: str, item: Mapping[str, Any], msg: Mapping[str, Any]) -> dict[str, Any]:
    """What Mandrill said, small: its event name, the bounce's description, code and SMTP
    diagnostic (a deferral's is its latest SMTP event's), the clicked URL."""
    found: dict[str, Any] = {"event": name}
    diagnosed = name in _DIAGNOSED
    texts = {
        "bounce_description": msg.get("bounce_description") if diagnosed else None,
        "diag": (msg.get("diag") or latest_smtp_diag(msg)) if diagnosed else None,
        "url": item.get("url") if name == "click" else None,
    }
    for key, value in texts.items():
        if isinstance(value, str) and value.strip():
            found[key] = sanitize(value, DETAIL_LIMIT)
    code = msg.get("bgtools_code")
    if diagnosed and type(code) is int:
        found["bgtools_code"] = code
    return found


def latest_smtp_diag(msg: Mapping[str, Any]) -> str:
    """The diagnostic of the message's latest SMTP event (a deferral's 4xx answer), if any."""
    attempts = msg.get("smtp_events")
    if not isinstance(attempts, list):
        return ""
    for attempt in reversed(attempts):
        if isinstance(attempt, dict) and isinstance(attempt.get("diag"), str):
            return attempt["diag"]
    return ""
