"""Mandrill webhooks against real signatures, made as Mandrill documents them: base64 of
HMAC-SHA1 under the webhook key over the webhook URL and each POST parameter, sorted by name,
as name + value. Payloads follow Mandrill's message event format (its example batch's shape)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import import_module
from urllib.parse import urlencode

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
from mailer.providers.mandrill.events import MandrillEvents

URL = "https://mail.example.com/webhooks/mandrill/9f2c41e8d7b64a3f?src=mandrill"
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
TS = int((NOW - timedelta(minutes=1)).timestamp())
MSG_ID = "fa239ebedd0a4831a3eefa59e880d8b2"


def sign(key: str, url: str, form: dict[str, str]) -> str:
    """The signature exactly as Mandrill's "Authenticating webhook requests" describes it."""
    signed = url + "".join(name + form[name] for name in sorted(form))
    digest = hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def post(events: list, *, key: str | None, url: str = URL, raw: str | None = None):
    """A POST as Mandrill makes it: mandrill_events form-encoded, signed with `key` (None: no
    signature header)."""
    form = {"mandrill_events": raw if raw is not None else json.dumps(events)}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key is not None:
        headers["X-Mandrill-Signature"] = sign(key, url, form)
    return WebhookRequest(
        method="POST",
        url=url,
        headers=headers,
        body=urlencode(form).encode(),
        form={name: [value] for name, value in form.items()},
    )


@pytest.fixture
def key() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def used() -> set[str]:
    return set()


@pytest.fixture
def make(key, used):
    """A MandrillEvents per request, as the service builds it: `used` plays its replay memory."""

    def build(*, webhook_key: str | None = None) -> MandrillEvents:
        given = key if webhook_key is None else webhook_key
        return MandrillEvents(
            settings={"api_url": "https://mandrillapp.com/api/1.0"},
            secrets={"api_key": "md-sending-key", "webhook_key": given},
            seen=lambda name: name in used,
            now=lambda: NOW,
        )

    return build


def message_event(name: str, **extra) -> dict:
    msg = {
        "ts": TS - 60,
        "subject": "Grüße",
        "email": "jürgen@bücher.example",
        "sender": "zoe@example.com",
        "tags": [],
        "state": "sent",
        "metadata": {"email_id": "4211"},
        "_id": MSG_ID,
        "_version": "exampleaaaaaaaaaaaaaaa",
        **extra.pop("msg", {}),
    }
    return {"event": name, "msg": msg, "_id": MSG_ID, "ts": TS, **extra}


def taken(events: MandrillEvents, request: WebhookRequest) -> list[Event]:
    events.verify(request)
    return events.parse(request)


# Accepted and normalized --------------------------------------------------------------------


def test_the_spec_names_these_events():
    module, name = spec_for("mandrill").events.split(":")
    assert getattr(import_module(module), name) is MandrillEvents
    assert MandrillEvents.kind == "mandrill"


def test_every_message_event_type_is_normalized(make, key):
    click_url = "https://shop.example/ä?x=1"
    batch = [
        message_event("send"),  # skipped: handed on, not delivered
        message_event("delivered", msg={"smtp_events": [{"diag": "250 2.0.0 OK", "ts": TS}]}),
        message_event(
            "deferral",
            msg={
                "state": "deferred",
                "smtp_events": [
                    {"diag": "451 4.3.5 Temporarily unavailable", "type": "deferred"},
                    {"diag": "451 4.7.1 Greylisted, try again", "type": "deferred"},
                ],
            },
        ),
        message_event(
            "hard_bounce",
            msg={
                "state": "bounced",
                "bounce_description": "bad_mailbox",
                "bgtools_code": 10,
                "diag": "smtp;550 5.1.1 The email account does not exist.",
            },
        ),
        message_event(
            "soft_bounce",
            msg={
                "state": "soft-bounced",
                "bounce_description": "mailbox_full",
                "bgtools_code": 22,
                "diag": "smtp;552 5.2.2 Over Quota",
            },
        ),
        message_event(  # its SMTP history is no diagnostic of the open
            "open",
            ip="127.0.0.1",
            user_agent="Postbox/1.1.3",
            msg={"smtp_events": [{"diag": "250 2.0.0 OK", "ts": TS}]},
        ),
        message_event("click", url=click_url, ip="127.0.0.1"),
        message_event("spam"),
        message_event("unsub"),
        message_event("reject", msg={"state": "rejected"}),
    ]
    events = make()
    got = taken(events, post(batch, key=key))

    url_digest = hashlib.sha256(click_url.encode()).hexdigest()[:16]
    bounced = {"bounce_description": "bad_mailbox", "bgtools_code": 10}
    expected = [  # (type, bounce type, provider event id suffix, detail beside the name)
        (EventType.DELIVERED, None, "delivered", {"diag": "250 2.0.0 OK"}),
        (EventType.DEFERRED, None, "deferral", {"diag": "451 4.7.1 Greylisted, try again"}),
        (
            EventType.BOUNCED,
            BounceType.HARD,
            "hard_bounce",
            {**bounced, "diag": "smtp;550 5.1.1 The email account does not exist."},
        ),
        (
            EventType.BOUNCED,
            BounceType.SOFT,
            "soft_bounce",
            {
                "bounce_description": "mailbox_full",
                "bgtools_code": 22,
                "diag": "smtp;552 5.2.2 Over Quota",
            },
        ),
        (EventType.OPENED, None, "open", {}),
        (EventType.CLICKED, None, "click", {"url": click_url}),
        (EventType.COMPLAINED, None, "spam", {}),
        (EventType.UNSUBSCRIBED, None, "unsub", {}),
        (EventType.DROPPED, None, "reject", {}),
    ]
    assert got == [
        Event(
            type=event_type,
            recipient="jürgen@bücher.example",
            occurred_at=datetime.fromtimestamp(TS, tz=UTC),
            provider_event_id=f"{MSG_ID}:{name}:{TS}"
            + (f":{url_digest}" if name == "click" else ""),
            provider_message_id=MSG_ID,
            email_id="4211",
            bounce_type=bounce_type,
            detail={"event": name, **said},
        )
        for event_type, bounce_type, name, said in expected
    ]
    assert all(e.occurred_at.utcoffset() == timedelta(0) for e in got)
    assert events.replay_keys == [
        f"mandrill:{sign(key, URL, {'mandrill_events': json.dumps(batch)})}"
    ]


def test_sync_inbound_and_unknown_events_are_skipped(make, key):
    reject_entry = {"reason": "hard-bounce", "email": "a@example.com", "detail": "x"}
    batch = [
        {"type": "blacklist", "action": "add", "reject": reject_entry, "ts": TS},
        {"type": "whitelist", "action": "remove", "entry": {"email": "a@example.com"}, "ts": TS},
        {"type": "denylist", "action": "change", "reject": reject_entry, "ts": TS},
        {"event": "inbound", "msg": {"raw_msg": "From: x\r\n\r\nhi", "email": "in@example.com"}},
        message_event("some_future_event"),
        message_event("spam"),
    ]
    got = taken(make(), post(batch, key=key))
    assert [(e.type, e.provider_event_id) for e in got] == [
        (EventType.COMPLAINED, f"{MSG_ID}:spam:{TS}")
    ]


def test_each_recipient_is_its_own_event_with_its_own_message_id(make, key):
    """send-raw answers one _id per recipient; the transport stores the first accepted one's,
    so the other recipients' events are matched by our email id, which every one carries."""
    other_id = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
    batch = [
        message_event("delivered"),
        message_event("delivered", msg={"email": "plain@example.org", "_id": other_id}),
    ]
    got = taken(make(), post(batch, key=key))
    assert [(e.recipient, e.provider_message_id, e.email_id) for e in got] == [
        ("jürgen@bücher.example", MSG_ID, "4211"),
        ("plain@example.org", other_id, "4211"),
    ]
    assert got[0].provider_event_id != got[1].provider_event_id


def test_the_test_batch_mandrill_sends_when_a_webhook_is_added_is_no_event(make, key):
    assert taken(make(), post([], key=key)) == []


def test_metadata_missing_or_empty_array_gives_no_email_id(make, key):
    batch = [
        message_event("open", msg={"metadata": []}),  # Mandrill's empty metadata
        message_event("click", url="https://a.example/", msg={"metadata": {"user_id": 7}}),
        message_event("spam", msg={"metadata": {"email_id": 4211}}),
        message_event("unsub", msg={"metadata": None}),
    ]
    got = taken(make(), post(batch, key=key))
    assert [e.email_id for e in got] == ["", "", "4211", ""]


def test_events_of_any_age_are_taken_as_mandrill_signs_no_timestamp(make, key):
    old = TS - 30 * 24 * 3600  # a batch Mandrill retried for long, or a late bounce
    got = taken(make(), post([message_event("hard_bounce") | {"ts": old}], key=key))
    assert got[0].occurred_at == datetime.fromtimestamp(old, tz=UTC)


def test_a_retry_of_the_same_batch_gives_the_same_event_ids(make, key):
    batch = [message_event("click", url="https://a.example/1"), message_event("delivered")]
    first = taken(make(), post(batch, key=key))
    # Mandrill re-renders `msg` (its opens and clicks grow): ids rest on stable fields only.
    later = copy.deepcopy(batch)
    for item in later:
        item["msg"]["clicks"] = [{"ts": TS, "url": "https://a.example/1"}]
    again = taken(make(), post(later, key=key))
    assert [e.provider_event_id for e in again] == [e.provider_event_id for e in first]


def test_two_clicks_on_two_links_in_one_second_are_two_events(make, key):
    batch = [
        message_event("click", url="https://a.example/1"),
        message_event("click", url="https://a.example/2"),
    ]
    got = taken(make(), post(batch, key=key))
    assert len({e.provider_event_id for e in got}) == 2


def test_detail_strings_are_cut_to_500_characters(make, key):
    long = "x" * 2000
    batch = [message_event("hard_bounce", msg={"diag": long, "bounce_description": long})]
    [event] = taken(make(), post(batch, key=key))
    assert len(event.detail["diag"]) == 500
    assert len(event.detail["bounce_description"]) == 500


# Refused: Unauthenticated -----------------------------------------------------------------


def test_one_byte_of_the_body_changed_is_refused(make, key):
    request = post([message_event("delivered")], key=key)
    value = request.form["mandrill_events"][0].replace('"delivered"', '"deliverex"')
    forged = replace(request, form={"mandrill_events": [value]})
    with pytest.raises(Unauthenticated, match="does not match"):
        make().verify(forged)


def test_another_url_is_refused_as_mandrill_signs_the_url(make, key):
    request = post([message_event("delivered")], key=key)
    with pytest.raises(Unauthenticated):
        make().verify(replace(request, url=URL.replace("https://", "http://")))
    with pytest.raises(Unauthenticated):
        make().verify(replace(request, url=URL.replace("src=mandrill", "src=other")))


def test_an_extra_unsigned_field_is_refused(make, key):
    request = post([message_event("delivered")], key=key)
    with pytest.raises(Unauthenticated):
        make().verify(replace(request, form={**request.form, "x": ["1"]}))


def test_a_repeated_field_is_refused(make, key):
    request = post([message_event("delivered")], key=key)
    doubled = {"mandrill_events": [*request.form["mandrill_events"], "[]"]}
    with pytest.raises(Unauthenticated, match="repeated"):
        make().verify(replace(request, form=doubled))


def test_a_replayed_request_is_refused_once_its_events_were_stored(make, key, used):
    request = post([message_event("delivered")], key=key)
    first = make()
    first.verify(request)
    # Not stored yet (our failure): Mandrill's retry of the same batch is still taken.
    make().verify(request)
    used.update(first.replay_keys)  # the service stored the events
    with pytest.raises(Unauthenticated, match="already used"):
        make().verify(request)


def test_a_wrong_key_is_refused(make):
    request = post([message_event("delivered")], key=secrets.token_urlsafe(16))
    with pytest.raises(Unauthenticated):
        make().verify(request)


def test_no_signature_is_refused(make):
    with pytest.raises(Unauthenticated, match="no X-Mandrill-Signature"):
        make().verify(post([message_event("delivered")], key=None))


def test_a_signature_that_is_not_base64_text_is_refused(make):
    request = post([message_event("delivered")], key=None)
    with pytest.raises(Unauthenticated):
        make().verify(replace(request, headers={"X-Mandrill-Signature": "ünïcode=="}))


@pytest.mark.parametrize("missing", ["", None])
def test_a_config_without_the_webhook_key_is_refused(key, used, missing):
    events = MandrillEvents(
        settings={},
        secrets={"api_key": "md-sending-key", **({} if missing is None else {"webhook_key": ""})},
        seen=lambda name: name in used,
        now=lambda: NOW,
    )
    with pytest.raises(Unauthenticated, match="webhook_key is not set"):
        events.verify(post([message_event("delivered")], key=key))


# Refused: Malformed (signed, but not what Mandrill documents) ------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "[{not json",
        "[" * 100_000,  # nested past the parser's depth
        '{"event": "delivered"}',
        '"delivered"',
        "[1, 2]",
        '[{"ts": 1}]',
        json.dumps([message_event("delivered") | {"event": 7}]),
        json.dumps([message_event("delivered") | {"msg": "x"}]),
        json.dumps([message_event("delivered", msg={"email": ""})]),
        json.dumps([message_event("delivered", msg={"email": 5})]),
        json.dumps([message_event("delivered", msg={"_id": ""})]),
        json.dumps([message_event("delivered", msg={"_id": "a b"})]),
        json.dumps([message_event("delivered") | {"ts": "1700000000"}]),
        json.dumps([message_event("delivered") | {"ts": True}]),
        json.dumps([message_event("delivered") | {"ts": 1.5}]),
        json.dumps([message_event("delivered") | {"ts": -1}]),
        json.dumps([message_event("delivered") | {"ts": 10**20}]),
    ],
)
def test_malformed_batches_are_refused(make, key, raw):
    request = post([], key=key, raw=raw)
    events = make()
    events.verify(request)  # well signed: Mandrill's key, just not Mandrill's format
    with pytest.raises(Malformed):
        events.parse(request)


def test_a_form_without_mandrill_events_is_malformed(make, key):
    form = {"events": "[]"}
    request = WebhookRequest(
        method="POST",
        url=URL,
        headers={"X-Mandrill-Signature": sign(key, URL, form)},
        body=urlencode(form).encode(),
        form={"events": ["[]"]},
    )
    events = make()
    events.verify(request)
    with pytest.raises(Malformed, match="mandrill_events"):
        events.parse(request)


def test_more_than_1000_events_is_malformed_and_1000_is_taken(make, key):
    one = message_event("open")
    assert len(taken(make(), post([one] * 1000, key=key))) == 1000
    request = post([one] * 1001, key=key)
    events = make()
    events.verify(request)
    with pytest.raises(Malformed, match="1001 events"):
        events.parse(request)
