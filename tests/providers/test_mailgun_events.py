"""Mailgun webhooks: signatures made as Mailgun documents them (hex HMAC-SHA256 of timestamp +
token under a signing key generated here), each event type normalized, and every way a request
is refused. No network, no database: the Events class alone, with a fixed clock."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest

from mailer.providers import spec_for
from mailer.providers.events import (
    BounceType,
    Event,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from mailer.providers.mailgun.events import MailgunEvents

NOW = datetime(2026, 2, 3, 19, 26, 40, tzinfo=UTC)
KEY = secrets.token_hex(32)
CONFIG_SECRETS = {"api_key": "key-x", "webhook_signing_key": KEY}
MESSAGE_ID = "20260203192638.000be97f99f8cea1@mg.example.com"


def sign(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def signature(key: str = KEY, *, at: datetime = NOW, token: str | None = None) -> dict:
    timestamp = str(int(at.timestamp()))
    token = token or secrets.token_hex(25)  # Mailgun's: 50 characters
    return {"timestamp": timestamp, "token": token, "signature": sign(key, timestamp, token)}


def event_data(event: str, **fields) -> dict:
    """An event as Mailgun's payload examples have it (fields we don't read included)."""
    data = {
        "event": event,
        "id": "MXcc2gEpS-eN8HfkOnmK2w",
        "timestamp": 1770146798.372891,
        "log-level": "info",
        "flags": {"is-authenticated": True, "is-test-mode": False},
        "envelope": {"sender": "app@mg.example.com", "targets": "ann@example.org"},
        "message": {
            "headers": {
                "from": "App <app@mg.example.com>",
                "message-id": MESSAGE_ID,
                "subject": "Hello",
                "to": "Ann <ann@example.org>",
            },
            "size": 341,
        },
        "recipient": "ann@example.org",
        "recipient-domain": "example.org",
        "tags": [],
        "user-variables": {"email_id": "42"},
    }
    data.update(fields)
    return data


def request(body: dict | bytes, content_type: str = "application/json") -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(
        method="POST",
        url="https://mail.example.net/webhooks/mailgun/abc",
        headers={"Content-Type": content_type},
        body=raw,
    )


def signed(data, **sig) -> WebhookRequest:
    return request({"signature": signature(**sig), "event-data": data})


@pytest.fixture
def used() -> set[str]:
    return set()


@pytest.fixture
def events(used):
    """make(secrets=...) -> MailgunEvents as the service builds one for a request."""

    def make(secrets: dict = CONFIG_SECRETS) -> MailgunEvents:
        settings = {"domain": "mg.example.com", "api_url": "https://api.mailgun.net"}
        return MailgunEvents(
            settings=settings, secrets=secrets, seen=lambda key: key in used, now=lambda: NOW
        )

    return make


def take(events, req: WebhookRequest, used: set[str]) -> list[Event]:
    """What the service does: verify, parse, then remember the replay keys."""
    handler = events()
    handler.verify(req)
    parsed = handler.parse(req)
    used.update(handler.replay_keys)
    return parsed


AT = datetime(2026, 2, 3, 19, 26, 38, 372891, tzinfo=UTC)
EVENT_ID = "MXcc2gEpS-eN8HfkOnmK2w:2026-02-03"
BOUNCE = {"code": 550, "message": "5.1.1 No such user", "description": "", "attempt-no": 1}
DEFER = {"code": 450, "message": "Greylisted", "description": "Try later", "retry-seconds": 300}
SMTP_550 = {"code": 550, "message": "5.1.1 No such user"}
SMTP_450 = {"code": 450, "message": "Greylisted", "description": "Try later"}


def failed(severity: str, reason: str, status: dict | None = None) -> dict:
    extra = {"delivery-status": status} if status else {}
    return event_data("failed", severity=severity, reason=reason, **extra)


# case: (event-data, type, bounce type, detail)
CASES = {
    "delivered": (
        event_data("delivered", **{"delivery-status": {"code": 250, "message": "OK"}}),
        EventType.DELIVERED,
        None,
        {"event": "delivered", "code": 250, "message": "OK"},
    ),
    "failed permanent": (
        failed("permanent", "bounce", BOUNCE),
        EventType.BOUNCED,
        BounceType.HARD,
        {"event": "failed", "severity": "permanent", "reason": "bounce", **SMTP_550},
    ),
    "failed temporary": (
        failed("temporary", "generic", DEFER),
        EventType.DEFERRED,
        None,
        {"event": "failed", "severity": "temporary", "reason": "generic", **SMTP_450},
    ),
    "failed after retries": (
        failed("permanent", "old"),
        EventType.BOUNCED,
        BounceType.SOFT,
        {"event": "failed", "severity": "permanent", "reason": "old"},
    ),
    "failed on mailgun's list": (
        failed("permanent", "suppress-bounce"),
        EventType.DROPPED,
        None,
        {"event": "failed", "severity": "permanent", "reason": "suppress-bounce"},
    ),
    "opened": (event_data("opened"), EventType.OPENED, None, {"event": "opened"}),
    "clicked": (
        event_data("clicked", url="https://example.com/a?b=c"),
        EventType.CLICKED,
        None,
        {"event": "clicked", "url": "https://example.com/a?b=c"},
    ),
    "complained": (event_data("complained"), EventType.COMPLAINED, None, {"event": "complained"}),
    "unsubscribed": (
        event_data("unsubscribed"),
        EventType.UNSUBSCRIBED,
        None,
        {"event": "unsubscribed"},
    ),
    "rejected": (
        event_data("rejected", reject={"reason": "Sandbox domain"}),
        EventType.DROPPED,
        None,
        {"event": "rejected", "reason": "Sandbox domain"},
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_signed_event_is_normalized(case, events, used):
    data, kind, bounce, detail = CASES[case]
    sig = signature()
    req = request({"signature": sig, "event-data": data})
    handler = events()
    handler.verify(req)
    assert handler.replay_keys == [f"mailgun:{sig['token']}"]
    assert handler.parse(req) == [
        Event(
            type=kind,
            recipient="ann@example.org",
            occurred_at=AT,
            provider_event_id=EVENT_ID,
            # Mailgun reports it bare; the transport stored the send answer's "<...>" form.
            provider_message_id=f"<{MESSAGE_ID}>",
            email_id="42",
            bounce_type=bounce,
            detail=detail,
        )
    ]


@pytest.mark.parametrize("name", ["accepted", "stored", "list_member_uploaded"])
def test_events_with_no_meaning_for_us_are_skipped(name, events, used):
    assert take(events, signed(event_data(name)), used) == []


def test_rejected_without_a_recipient_gives_one_event_per_to_address(events, used):
    data = event_data("rejected", reject={"reason": "not allowed"})
    del data["recipient"]
    data["message"]["headers"]["to"] = "Ann <ann@example.org>, bob@example.org, ANN@example.org"
    got = take(events, signed(data), used)
    assert [e.recipient for e in got] == ["ann@example.org", "bob@example.org"]
    assert len({e.provider_event_id for e in got}) == 2
    assert all(e.provider_event_id.startswith(EVENT_ID + ":") for e in got)
    assert {e.type for e in got} == {EventType.DROPPED}


def test_message_id_already_bracketed_or_missing_and_variables(events, used):
    data = event_data("delivered", **{"user-variables": {"email_id": 42}})
    data["message"]["headers"]["message-id"] = f"<{MESSAGE_ID}>"
    (got,) = take(events, signed(data), used)
    assert (got.provider_message_id, got.email_id) == (f"<{MESSAGE_ID}>", "42")
    # Site mail carries no variables: Mailgun's own example shows them as an empty list.
    data = event_data("delivered", message={}, **{"user-variables": []})
    (got,) = take(events, signed(data), used)
    assert (got.provider_message_id, got.email_id) == ("", "")


def test_detail_strings_are_cut(events, used):
    long = "x" * 5000
    data = event_data("clicked", url=long, **{"delivery-status": {"message": long}})
    (got,) = take(events, signed(data), used)
    assert len(got.detail["url"]) == len(got.detail["message"]) == 500


def test_the_signature_in_the_parent_signature_field_is_taken(events, used):
    """A subaccount's event: `signature` under its key, `parent-signature` under ours."""
    sig = signature(secrets.token_hex(32))
    sig["parent-signature"] = sign(KEY, sig["timestamp"], sig["token"])
    req = request({"signature": sig, "event-data": event_data("delivered")})
    assert len(take(events, req, used)) == 1


# Refused: Unauthenticated ----------------------------------------------------------------


def flip(raw: bytes, inside: str) -> bytes:
    """The body with one byte of `inside` (a value in it) changed."""
    at = raw.index(inside.encode()) + len(inside) // 2
    swapped = b"0" if raw[at : at + 1] != b"0" else b"1"
    return raw[:at] + swapped + raw[at + 1 :]


@pytest.mark.parametrize("field", ["timestamp", "token", "signature"])
def test_one_byte_changed_in_the_signed_fields(field, events):
    sig = signature()
    raw = json.dumps({"signature": sig, "event-data": event_data("delivered")}).encode()
    with pytest.raises(Unauthenticated):
        events().verify(request(flip(raw, sig[field])))


def test_event_data_is_not_covered_by_mailgun_signature(events):
    """Mailgun signs only timestamp + token (see the module docstring): a change in event-data
    under a genuine signature can't be seen. This test pins that limit down, so nobody takes
    it for checked; the token's single use and MAX_AGE are what bound it."""
    sig = signature()
    raw = json.dumps({"signature": sig, "event-data": event_data("delivered")}).encode()
    events().verify(request(flip(raw, "ann@example.org")))


@pytest.mark.parametrize("minutes", [-6, 6, -60 * 24])
def test_a_stale_or_future_timestamp(minutes, events):
    req = signed(event_data("delivered"), at=NOW + timedelta(minutes=minutes))
    with pytest.raises(Unauthenticated, match="stale"):
        events().verify(req)


def test_a_timestamp_within_max_age_passes(events, used):
    req = signed(event_data("delivered"), at=NOW - timedelta(minutes=4))
    assert len(take(events, req, used)) == 1


def test_a_replayed_token(events, used):
    token = secrets.token_hex(25)
    req = signed(event_data("delivered"), token=token)
    take(events, req, used)
    with pytest.raises(Unauthenticated, match="replay"):
        events().verify(req)
    # The same token, freshly signed, is still a replay; another token is not.
    with pytest.raises(Unauthenticated, match="replay"):
        events().verify(signed(event_data("opened"), token=token))
    events().verify(signed(event_data("opened")))


def test_a_token_is_not_spent_by_a_request_that_was_not_stored(events, used):
    """The service remembers replay keys only once the events are stored: Mailgun's retry of
    a request that failed on our side, same token, is taken."""
    req = signed(event_data("delivered"))
    events().verify(req)
    events().verify(req)


def test_a_wrong_key(events):
    req = signed(event_data("delivered"), key=secrets.token_hex(32))
    with pytest.raises(Unauthenticated, match="does not match"):
        events().verify(req)


@pytest.mark.parametrize(
    "block",
    [
        None,
        "abc",
        {},
        {"timestamp": "1770146800", "token": "t" * 50},
        {"timestamp": "1770146800", "token": "t" * 50, "signature": "é" * 64},
        {"timestamp": "1770146800", "token": "t" * 50, "signature": "00"},
        {"timestamp": "1770146800.5", "token": "t" * 50, "signature": "0" * 64},
        {"timestamp": True, "token": "t" * 50, "signature": "0" * 64},
        {"timestamp": "1770146800", "token": "bad token", "signature": "0" * 64},
        {"timestamp": "1770146800", "token": 5, "signature": "0" * 64},
    ],
)
def test_no_or_a_broken_signature(block, events):
    body = {"event-data": event_data("delivered")}
    if block is not None:
        body["signature"] = block
    with pytest.raises(Unauthenticated):
        events().verify(request(body))


def test_an_integer_timestamp_is_signed_as_its_digits(events, used):
    sig = signature()
    sig["timestamp"] = int(sig["timestamp"])
    req = request({"signature": sig, "event-data": event_data("delivered")})
    assert len(take(events, req, used)) == 1


def test_a_far_future_timestamp_is_stale_not_a_crash(events):
    token = "t" * 50
    sig = {"timestamp": "999999999999", "token": token}
    sig["signature"] = sign(KEY, sig["timestamp"], token)
    with pytest.raises(Unauthenticated, match="stale"):
        events().verify(request({"signature": sig, "event-data": event_data("delivered")}))


@pytest.mark.parametrize("config", [{}, {"api_key": "key-x"}, {"webhook_signing_key": ""}])
def test_a_config_without_the_signing_key(config, events):
    with pytest.raises(Unauthenticated, match="webhook_signing_key"):
        events(config).verify(signed(event_data("delivered")))


# Refused: Malformed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b"[" * 100_000, b'{"a": NaN}'],
    ids=["broken", "not utf-8", "a list", "a string", "too deep", "NaN"],
)
def test_a_body_that_is_not_a_json_object(raw, events):
    for step in (events().verify, events().parse):
        with pytest.raises(Malformed):
            step(request(raw))


def test_a_legacy_form_encoded_webhook_is_refused(events):
    form = b"event=delivered&recipient=ann%40example.org&timestamp=1&token=t&signature=s"
    req = request(form, "application/x-www-form-urlencoded")
    with pytest.raises(Malformed, match="legacy"):
        events().verify(req)


def test_a_huge_list_of_events(events):
    req = signed([event_data("delivered") for _ in range(1001)])
    handler = events()
    handler.verify(req)
    with pytest.raises(Malformed, match="one event"):
        handler.parse(req)


def broken(**changes) -> dict:
    data = event_data("delivered")
    for name, value in changes.items():
        if value is None:
            del data[name.replace("_", "-")]
        else:
            data[name.replace("_", "-")] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        None,
        "delivered",
        broken(event=None),
        broken(event=7),
        broken(id=None),
        broken(id=""),
        broken(timestamp=None),
        broken(timestamp="1770146798"),
        broken(timestamp=-1),
        broken(timestamp=1e300),
        broken(recipient=None),
        broken(recipient=""),
        broken(recipient=["ann@example.org"]),
        broken(event="failed"),
        broken(event="failed", severity="maybe"),
    ],
)
def test_a_signed_event_not_as_documented(data, events):
    body = {"signature": signature()}
    if data is not None:
        body["event-data"] = data
    handler = events()
    handler.verify(request(body))
    with pytest.raises(Malformed):
        handler.parse(request(body))


def test_the_spec_names_these_events_and_keeps_the_key_from_the_transport():
    spec = spec_for("mailgun")
    module, name = spec.events.split(":")
    assert getattr(import_module(module), name) is MailgunEvents
    option = spec.option("webhook_signing_key")
    assert option is not None and option.transport is False and not option.required
