"""Mailgun's webhooks (the current JSON form): verify the signature, normalize the event.

Followed: Mailgun's "Securing Webhooks" (documentation.mailgun.com/docs/mailgun/user-manual/
webhooks/securing-webhooks): the body is {"signature": {"timestamp", "token", "signature"},
"event-data": {...}}; signature = hex HMAC-SHA256 with the webhook signing key over timestamp +
token, no separator; a subaccount's event also carries "parent-signature", the same HMAC under
the primary account's key; cache the token against replays, check the timestamp. "Webhooks" and
"Webhook Payloads" (.../user-manual/webhooks/webhooks, .../webhook-payloads) and "Event
Structure"/"Event Types" (.../user-manual/events/): one event per request, its fields.

What Mailgun does NOT let us check: its signature covers only timestamp + token, not the
event-data, so a request intercepted in transit could carry altered event-data under a genuine
signature. The single-use token and the 5-minute window (MAX_AGE) bound that to one request
taken within minutes, and only by someone able to read Mailgun's TLS traffic to us; nothing in
the body lets us do better (Mailgun's TLS client certificate can only be checked by the server
in front of us, not here).

Legacy (form-encoded) webhooks are refused as Malformed: Mailgun made them read-only on
2023-04-18 and retired them in October 2023 (help.mailgun.com, "Legacy Webhooks"); the current
documentation describes only the JSON form for current accounts."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

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

_TIMESTAMP = re.compile(r"\d{1,12}")
_TOKEN = re.compile(r"[!-~]{1,256}")  # Mailgun's are 50 hex digits; visible ASCII, bounded
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# A Unix time in seconds Mailgun could have stamped (1970 .. 2286): bounds the conversion.
_LATEST = 10_000_000_000
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Mailgun event name -> ours; "failed" is decided by severity and reason (see failure()).
# Not listed (skipped): "accepted" (queued at Mailgun: our attempt already says "sent"), and
# any event Mailgun adds later or sends for things that aren't our mail (mailing lists, stored).
_TYPES = {
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "rejected": EventType.DROPPED,
}


def cut(value: Any) -> Any:
    """A detail value: strings cut to MAX_DETAIL, whole numbers kept, the rest dropped."""
    if isinstance(value, str):
        return value[:MAX_DETAIL]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def failure(data: dict) -> tuple[EventType, BounceType | None]:
    """What a "failed" event means for us.

    severity "temporary": the receiving server deferred it and Mailgun will try again (its
    webhook docs: "will re-attempt delivery"), so DEFERRED, not a bounce: nothing has bounced
    yet, and the final outcome comes in a later event. Reason "old" is Mailgun giving up after
    its retries ran out (it has been seen with either severity): a SOFT bounce, since every
    answer was temporary. Reasons "suppress-*": Mailgun never tried, the address being on its
    own bounce/unsubscribe/complaint list: DROPPED. Any other permanent failure: a HARD bounce.
    """
    reason, severity = data.get("reason"), data.get("severity")
    if reason == "old":
        return EventType.BOUNCED, BounceType.SOFT
    if severity == "temporary":
        return EventType.DEFERRED, None
    if severity != "permanent":
        raise Malformed("mailgun: a failed event without a permanent or temporary severity")
    if isinstance(reason, str) and reason.startswith("suppress-"):
        return EventType.DROPPED, None
    return EventType.BOUNCED, BounceType.HARD


def occurred_at(data: dict) -> datetime:
    stamp = data.get("timestamp")
    if (
        isinstance(stamp, bool)
        or not isinstance(stamp, int | float)
        or not math.isfinite(stamp)
        or not 0 <= stamp < _LATEST
    ):
        raise Malformed("mailgun: the event has no valid timestamp")
    return datetime.fromtimestamp(stamp, UTC)


def message_id(data: dict) -> str:
    """Mailgun reports message.headers["message-id"] without angle brackets; our transport
    stores the "id" of Mailgun's send answer, which is the same Message-ID WITH them
    ("<20240101.abc@mg.example.com>"), so put them back to compare equal."""
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get("message-id") if isinstance(headers, dict) else None
    if not isinstance(value, str) or not value.strip():
        return ""
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def email_id(data: dict) -> str:
    """Ours, sent as the `v:email_id` variable; Mailgun echoes variables in "user-variables"
    (an empty list when there are none, as its own payload example shows)."""
    variables = data.get("user-variables")
    value = variables.get("email_id") if isinstance(variables, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value[:255] if isinstance(value, str) else ""


def detail(name: str, data: dict) -> dict:
    """Mailgun's own words: its event name, severity/reason, the SMTP answer, the clicked url."""
    status = data.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    reject = data.get("reject")
    reject = reject if isinstance(reject, dict) else {}
    found = {
        "event": name,
        "severity": data.get("severity"),
        "reason": data.get("reason") or reject.get("reason"),
        "code": status.get("code"),
        "message": status.get("message"),
        "description": status.get("description") or reject.get("description"),
        "url": data.get("url"),
    }
    return {key: value for key, value in ((k, cut(v)) for k, v in found.items()) if value}


def recipients(name: str, data: dict) -> list[str]:
    """The one recipient Mailgun names. Only "rejected" may lack it (the whole send was
    refused): then the To header's addresses, one event each."""
    recipient = data.get("recipient")
    if isinstance(recipient, str) and 0 < len(recipient.strip()) <= 320:
        return [recipient.strip()]
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    to = headers.get("to") if isinstance(headers, dict) else None
    if name == "rejected" and recipient is None and isinstance(to, str):
        found: dict[str, str] = {}  # each address once, whatever its case, in To's order
        for _, address in getaddresses([to]):
            if 0 < len(address) <= 320:
                found.setdefault(address.lower(), address)
        if len(found) > MAX_EVENTS:
            raise Malformed(f"mailgun: more than {MAX_EVENTS} recipients in one event")
        if found:
            return list(found.values())
    raise Malformed(f"mailgun: a {name} event without a valid recipient")


class MailgunEvents(Events):
    kind = "mailgun"

    def document(self, request: WebhookRequest) -> dict:
        """The JSON body as an object; Malformed for anything else (a legacy form post, say):
        where there is no readable body, there is no signature to look for either."""
        content_type = str(request.headers.get("Content-Type") or "").lower()
        if request.form or content_type.startswith(_FORM_TYPES):
            raise Malformed(
                "mailgun: a legacy form-encoded webhook; Mailgun retired them in 2023, "
                "configure a current (JSON) webhook instead"
            )
        try:
            body = json.loads(request.body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise Malformed("mailgun: the body is not JSON") from None
        if not isinstance(body, dict):
            raise Malformed("mailgun: the body is not a JSON object")
        return body

    def verify(self, request: WebhookRequest) -> None:
        key = self.secret("webhook_signing_key").encode("utf-8")
        block = self.document(request).get("signature")
        if not isinstance(block, dict):
            raise Unauthenticated("mailgun: the request is not signed")
        stamp, token = block.get("timestamp"), block.get("token")
        if isinstance(stamp, int) and not isinstance(stamp, bool):
            stamp = str(stamp)  # documented as an int, sent as a string: both are seen
        if not (
            isinstance(stamp, str)
            and _TIMESTAMP.fullmatch(stamp)
            and isinstance(token, str)
            and _TOKEN.fullmatch(token)
        ):
            raise Unauthenticated("mailgun: the signature has no valid timestamp and token")
        expected = hmac.new(key, f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
        # The key given may be the subaccount's (signature) or the primary account's
        # (parent-signature): either one matching is Mailgun's word.
        given = [block.get(field) for field in ("signature", "parent-signature")]
        if not any(
            isinstance(value, str)
            and _HEX_SHA256.fullmatch(value)
            and hmac.compare_digest(value.lower().encode(), expected.encode())
            for value in given
        ):
            raise Unauthenticated("mailgun: the signature does not match the signing key")
        if int(stamp) >= _LATEST:
            raise Unauthenticated(f"mailgun: the signed timestamp {stamp} is stale")
        self.check_fresh(datetime.fromtimestamp(int(stamp), UTC))
        self.check_not_replayed(token)

    def parse(self, request: WebhookRequest) -> list[Event]:
        data = self.document(request).get("event-data")
        if isinstance(data, list):
            raise Malformed("mailgun: event-data is a list; Mailgun posts one event a request")
        if not isinstance(data, dict):
            raise Malformed("mailgun: the body has no event-data object")
        name = data.get("event")
        if not isinstance(name, str):
            raise Malformed("mailgun: the event has no name")
        if name == "failed":
            kind, bounce = failure(data)
        elif name in _TYPES:
            kind, bounce = _TYPES[name], None
        else:
            return []  # accepted, or nothing that concerns delivery of our mail
        return self.events(name, data, kind, bounce)

    def events(
        self, name: str, data: dict, kind: EventType, bounce: BounceType | None
    ) -> list[Event]:
        event_id = data.get("id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 100:
            raise Malformed("mailgun: the event has no id")
        at = occurred_at(data)
        # Mailgun's event id is "unique within a day" (Event Structure): with the event's own
        # UTC date it is unique for good, and still the same when Mailgun posts it again.
        base = f"{event_id}:{at:%Y-%m-%d}"
        addresses = recipients(name, data)
        common = {
            "type": kind,
            "occurred_at": at,
            "provider_message_id": message_id(data),
            "email_id": email_id(data),
            "bounce_type": bounce,
            "detail": detail(name, data),
        }
        if len(addresses) == 1:
            return [Event(recipient=addresses[0], provider_event_id=base, **common)]
        # A rejected send names its recipients only in To: one event each, told apart by a
        # digest of the address (bounded, unlike the address itself).
        return [
            Event(recipient=address, provider_event_id=f"{base}:{digest(address)}", **common)
            for address in addresses
        ]


def digest(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()[:32]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
