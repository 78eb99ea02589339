"""SendGrid's Signed Event Webhook against real signatures: a P-256 key pair made here, each
request signed as SendGrid documents (ECDSA over SHA-256 of the timestamp header followed by the
raw body, base64 DER in X-Twilio-Email-Event-Webhook-Signature). SendGrid publishes no test
vectors. The clock is fixed; the replay memory is a set filled as the service would."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from django.http.request import HttpHeaders

from mailer.providers import build_provider, spec_for
from mailer.providers.events import (
    BounceType,
    Event,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from mailer.providers.sendgrid import verification_key
from mailer.providers.sendgrid.events import SendGridEvents
from mailer.providers.sendgrid.transport import build_payload
from tests.fakes.sendgrid import VALID_KEY
from tests.providers.http_kinds import simple_message

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
AT = int(NOW.timestamp()) - 30  # when the events happened
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def public_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC = public_text(KEY)


def signed(
    body: bytes, *, key=KEY, at: datetime = NOW, signature: str | None = None, **headers: str
) -> WebhookRequest:
    """A request as SendGrid posts it; headers go through Django's case-insensitive kind."""
    timestamp = str(int(at.timestamp()))
    if signature is None:
        der = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        signature = base64.b64encode(der).decode()
    meta = {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": signature,
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
        **{f"HTTP_{name}": value for name, value in headers.items()},
    }
    meta = {name: value for name, value in meta.items() if value is not None}
    return WebhookRequest(
        method="POST", url="https://mail.example.com/hooks/x", headers=HttpHeaders(meta), body=body
    )


def as_body(items: Any) -> bytes:
    return json.dumps(items).encode()


@pytest.fixture
def used() -> set[str]:
    return set()


@pytest.fixture
def make(used):
    def make(secrets: dict[str, Any] | None = None) -> SendGridEvents:
        given = {"webhook_public_key": PUBLIC} if secrets is None else secrets
        return SendGridEvents(
            settings={}, secrets=given, seen=lambda key: key in used, now=lambda: NOW
        )

    return make


@pytest.fixture
def take(make, used):
    """Verify and parse as the service does; remember the replay keys once 'stored'."""

    def take(request: WebhookRequest) -> list[Event]:
        events = make()
        events.verify(request)
        parsed = events.parse(request)
        used.update(events.replay_keys)
        return parsed

    return take


def base(event: str, **fields: Any) -> dict[str, Any]:
    """One event as SendGrid documents it, our custom arg at the top level."""
    kind = f"{fields.get('type', '')}{fields.get('bounce_classification', '')}"
    return {
        "email": "rcpt@example.org",
        "timestamp": AT,
        "event": event,
        "sg_event_id": f"id-{event}-{kind}",
        "sg_message_id": "A6FilwaAR_Wm_VTCEFql_w.filterdrecv-66949dbc98-fvstg-1-648215A4-1D.0",
        "smtp-id": "<A6FilwaAR_Wm_VTCEFql_w@geopod-ismtpd-1>",
        "category": ["cat facts"],
        "email_id": "42",
        **fields,
    }


def expected(item: dict, event_type: EventType, detail: dict, bounce: BounceType | None) -> Event:
    return Event(
        type=event_type,
        recipient="rcpt@example.org",
        occurred_at=datetime.fromtimestamp(AT, UTC),
        provider_event_id=item["sg_event_id"],
        provider_message_id="A6FilwaAR_Wm_VTCEFql_w",
        email_id="42",
        bounce_type=bounce,
        detail={"event": item["event"], **detail},
    )


# Accepted and normalized ---------------------------------------------------------------------

HARD, SOFT = BounceType.HARD, BounceType.SOFT
BOUNCE = {"bounce_type": "bounce"}
BLOCKED = {"bounce_type": "blocked"}
# (SendGrid's event, our type or None where skipped, our detail but the event name, bounce type)
EVERY_TYPE = [
    (base("processed"), None, {}, None),
    (
        base("delivered", response="250 OK", tls=1),
        EventType.DELIVERED,
        {"response": "250 OK"},
        None,
    ),
    (
        base("deferred", response="400 try again later", attempt="5"),
        EventType.DEFERRED,
        {"response": "400 try again later", "attempt": "5"},
        None,
    ),
    (
        base("bounce", type="bounce", status="5.1.1", reason="550 5.1.1 unknown user"),
        EventType.BOUNCED,
        BOUNCE | {"status": "5.1.1", "reason": "550 5.1.1 unknown user"},
        HARD,
    ),
    (
        base("bounce", type="blocked", status="4.2.2", reason="mailbox full"),
        EventType.BOUNCED,
        BLOCKED | {"status": "4.2.2", "reason": "mailbox full"},
        SOFT,
    ),
    (  # The classification refines the type: an invalid address is hard even when "blocked" ...
        base("bounce", type="blocked", bounce_classification="Invalid Address"),
        EventType.BOUNCED,
        BLOCKED | {"classification": "Invalid Address"},
        HARD,
    ),
    (  # ... and a refusal for our reputation does not mean the address is dead.
        base("bounce", type="bounce", bounce_classification="Reputation"),
        EventType.BOUNCED,
        BOUNCE | {"classification": "Reputation"},
        SOFT,
    ),
    (
        base("dropped", reason="Bounced Address"),
        EventType.DROPPED,
        {"reason": "Bounced Address"},
        None,
    ),
    (
        base("open", useragent="Mozilla/5.0", ip="192.0.2.1", sg_machine_open=False),
        EventType.OPENED,
        {"machine_open": False},
        None,
    ),
    (
        base("click", url="https://example.com/a?b=c", url_offset={"index": 0, "type": "html"}),
        EventType.CLICKED,
        {"url": "https://example.com/a?b=c"},
        None,
    ),
    (base("spamreport"), EventType.COMPLAINED, {}, None),
    (base("unsubscribe"), EventType.UNSUBSCRIBED, {}, None),
    (
        base("group_unsubscribe", asm_group_id=10),
        EventType.UNSUBSCRIBED,
        {"asm_group_id": "10"},
        None,
    ),
    (base("group_resubscribe", asm_group_id=10), None, {}, None),
    (
        {"event": "account_status_change", "timestamp": AT, "type": "compliance_suspend"},
        None,
        {},
        None,
    ),
]


def test_every_event_type_of_a_signed_batch_is_normalized(take):
    body = as_body([item for item, *_ in EVERY_TYPE])

    events = take(signed(body))

    assert events == [expected(*row) for row in EVERY_TYPE if row[1] is not None]
    assert all(e.occurred_at.tzinfo is UTC for e in events)


def test_the_message_id_matches_what_the_transport_stored(take, sendgrid_server):
    message = simple_message()
    message.metadata = {"email_id": "42"}
    stored = build_provider(
        "sendgrid",
        settings={"host": sendgrid_server.url},
        secrets={"api_key": VALID_KEY, "webhook_public_key": PUBLIC},  # not the transport's
        timeout=2,
        connect_timeout=2,
        allow_private_hosts=True,
    ).send(message)

    [got] = sendgrid_server.messages
    assert got["custom_args"] == {"email_id": "42"}
    suffix = ".recvd-5f54b5d587-pczjm-1-67BADEEA-6.0"
    [event] = take(signed(as_body([base("delivered", sg_message_id=stored + suffix)])))
    assert (event.provider_message_id, event.email_id) == (stored, "42")


def test_custom_args_only_when_the_message_has_metadata():
    message = simple_message()
    assert "custom_args" not in build_payload(message)
    message.metadata = {"email_id": 7}
    assert build_payload(message)["custom_args"] == {"email_id": "7"}


@pytest.mark.parametrize(
    ("sg_message_id", "provider_message_id"),
    [
        ("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "14c5d75ce93.dfd.64b469"),
        ("euo2iKxdSayPF4YE4--I7A.recvd-5f54b5d587-pczjm-1-67BADEEA-6.0", "euo2iKxdSayPF4YE4--I7A"),
        ("euo2iKxdSayPF4YE4--I7A.0", "euo2iKxdSayPF4YE4--I7A"),
        ("euo2iKxdSayPF4YE4--I7A", "euo2iKxdSayPF4YE4--I7A"),
        (None, ""),  # an asynchronous bounce has none
    ],
)
def test_message_id_formats(take, sg_message_id, provider_message_id):
    item = base("bounce", type="bounce", sg_message_id=sg_message_id)
    [event] = take(signed(as_body([item])))
    assert event.provider_message_id == provider_message_id


@pytest.mark.parametrize("email_id", [None, 42, "", "x" * 65])
def test_mail_not_sent_by_us_has_no_email_id(take, email_id):
    [event] = take(signed(as_body([base("delivered", email_id=email_id)])))
    assert event.email_id == ""


def test_detail_strings_are_cut(take):
    item = base("click", url="https://example.com/" + "a" * 1000)
    [event] = take(signed(as_body([item])))
    assert len(event.detail["url"]) == 500


def test_an_empty_batch_is_nothing(take):
    assert take(signed(b"[]")) == []


# Unauthenticated ------------------------------------------------------------------------------


def test_one_byte_of_the_body_changed(make):
    body = as_body([base("delivered")])
    request = signed(body)
    at = body.index(b'"42"') + 2  # a digit of the email id
    changed = body[:at] + bytes([body[at] ^ 0x07]) + body[at + 1 :]
    forged = WebhookRequest(method="POST", url=request.url, headers=request.headers, body=changed)
    with pytest.raises(Unauthenticated, match="does not match"):
        make().verify(forged)


@pytest.mark.parametrize("age", [timedelta(minutes=6), timedelta(minutes=-6), timedelta(days=3)])
def test_a_stale_or_future_timestamp(make, age):
    with pytest.raises(Unauthenticated, match="stale"):
        make().verify(signed(as_body([base("delivered")]), at=NOW - age))


def test_a_timestamp_within_max_age_is_taken(take):
    assert len(take(signed(as_body([base("delivered")]), at=NOW - timedelta(minutes=4)))) == 1


def test_a_replay_is_refused_once_the_events_were_stored(take, make, used):
    request = signed(as_body([base("delivered")]))
    make().verify(request)  # verified, but not stored (failed on our side): the retry is taken
    take(request)
    assert len(used) == 1
    with pytest.raises(Unauthenticated, match="replay"):
        make().verify(request)


def test_a_replay_under_the_twin_signature_is_refused(take, make):
    body = as_body([base("delivered")])
    request = signed(body)
    take(request)
    r, s = decode_dss_signature(
        base64.b64decode(request.headers["X-Twilio-Email-Event-Webhook-Signature"])
    )
    twin = base64.b64encode(encode_dss_signature(r, P256_ORDER - s)).decode()
    assert twin != request.headers["X-Twilio-Email-Event-Webhook-Signature"]
    with pytest.raises(Unauthenticated, match="replay"):  # so the twin verified: it is checked last
        make().verify(signed(body, signature=twin))
    with pytest.raises(Unauthenticated):  # spaces, which the SDK's own decoding would skip
        make().verify(signed(body, signature=" ".join(twin)))


def test_a_wrong_key(make):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthenticated, match="does not match"):
        make().verify(signed(as_body([base("delivered")]), key=other))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": None}, "not signed"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": "not*base64"}, "not a base64 signature"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": "abc"}, "not a base64 signature"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": "QUJD" * 60}, "not a base64 signature"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": "QUJD"}, "does not match"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": None}, "timestamp"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": "1e9"}, "timestamp"),
        ({"X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": "9" * 12}, "timestamp"),
    ],
)
def test_unsigned_or_unreadable_signature_headers(make, headers, message):
    request = signed(as_body([base("delivered")]), **headers)
    with pytest.raises(Unauthenticated, match=message):
        make().verify(request)


def test_a_body_that_is_not_utf8_was_never_signed_by_sendgrid(make):
    with pytest.raises(Unauthenticated, match="does not match"):
        make().verify(signed(b'[{"email": "\xff"}]'))


@pytest.mark.parametrize("secrets", [{}, {"webhook_public_key": ""}, {"api_key": VALID_KEY}])
def test_a_config_without_the_key_trusts_nothing(make, secrets):
    with pytest.raises(Unauthenticated, match="webhook_public_key is not set"):
        make(secrets).verify(signed(as_body([base("delivered")])))


@pytest.mark.parametrize(
    "key", ["not a key", public_text(ec.generate_private_key(ec.SECP384R1())), PUBLIC[:-8]]
)
def test_a_key_that_is_not_p256_trusts_nothing(make, key):
    with pytest.raises(Unauthenticated, match="not a P-256 key"):
        make({"webhook_public_key": key}).verify(signed(as_body([base("delivered")])))


# Malformed ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"event": "delivered"', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"event": "delivered"}', "not a JSON array"),
        (as_body(["delivered"]), "event 0 is not an object"),
        (as_body([base("delivered"), {"email": "a@example.org"}]), "event 1 is not an object"),
        (as_body([base("delivered")] * 1001), "more than 1000 events"),
        (as_body([base("delivered", email=None)]), "event 0 has no valid email"),
        (as_body([base("delivered", email="a" * 321)]), "no valid email"),
        (as_body([base("delivered", sg_event_id=None)]), "no valid sg_event_id"),
        (as_body([base("delivered", timestamp="1772445570")]), "no valid timestamp"),
        (as_body([base("delivered", timestamp=True)]), "no valid timestamp"),
        (as_body([base("delivered", timestamp=10**20)]), "no valid timestamp"),
        (as_body([base("delivered", timestamp=1.5)]), "no valid timestamp"),
        (as_body([base("delivered", sg_message_id=["x"])]), "sg_message_id that is not text"),
        (as_body([base("delivered", sg_message_id=".filter0001")]), "no valid sg_message_id"),
    ],
)
def test_signed_but_not_as_documented(make, body, message):
    request = signed(body)
    events = make()
    events.verify(request)
    with pytest.raises(Malformed, match=message):
        events.parse(request)


def test_a_thousand_events_are_taken(take):
    items = [base("delivered", sg_event_id=f"id-{n}") for n in range(1000)]
    assert len(take(signed(as_body(items)))) == 1000


# The spec -------------------------------------------------------------------------------------


def test_the_spec_names_the_events_and_a_key_not_for_the_transport():
    spec = spec_for("sendgrid")
    assert spec.events == "mailer.providers.sendgrid.events:SendGridEvents"
    option = spec.option("webhook_public_key")
    assert option is not None and not option.transport and not option.required
    assert option.title == "Event Webhook verification key"


def test_the_key_is_checked_when_saved():
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    one_line = " ".join(pem.decode().split("\n"))
    assert verification_key(f"  {PUBLIC} ") == PUBLIC
    assert verification_key(one_line) == PUBLIC
    p384 = public_text(ec.generate_private_key(ec.SECP384R1()))
    for wrong in ("SG.not-a-key", p384, PUBLIC[:-8]):
        with pytest.raises(ValueError, match="P-256") as error:
            verification_key(wrong)
        assert wrong not in str(error.value)
