"""Postmark's webhook events (mailer.providers.postmark.events) against requests built as
Postmark builds them: the credentials written into the webhook URL given to Postmark, sent as
`Authorization: Basic ...`, and its documented records (one JSON object per POST).

Postmark signs nothing: the tests that would refuse a changed body, an old request or a replay
elsewhere show here that those pass verify() (what Postmark does not let us check), and that a
retried record keeps its event id, so the service stores it once."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from django.core.mail import EmailMessage

from mailer.providers import postmark
from mailer.providers.events import (
    BounceType,
    Event,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from mailer.providers.postmark.events import PostmarkEvents
from tests.providers.http_kinds import POSTMARK

NOW = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
USER = f"pm-{secrets.token_hex(8)}"
PASSWORD = f"p@ss:{secrets.token_urlsafe(24)}/é"  # URL-reserved and non-ASCII characters
SECRETS = {"server_token": "token", "webhook_username": USER, "webhook_password": PASSWORD}
HOOK = "https://mail.example.com/webhooks/postmark/3f1c"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
JOHN = "john@example.com"
UNSUBSCRIBED = EventType.UNSUBSCRIBED
LINK = "https://example.com/ünïcode?x=1"


def hook_url(user: str = USER, password: str = PASSWORD) -> str:
    """The webhook URL as it is given to Postmark: the credentials percent-encoded in it."""
    scheme, rest = HOOK.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def posted(record: Any, url: str | None = None, **headers: str) -> WebhookRequest:
    """What Postmark posts to `url`: the userinfo decoded into an Authorization: Basic header,
    as any HTTP client does, and taken off the URL."""
    parts = urlsplit(url or hook_url())
    body = record if isinstance(record, bytes) else json.dumps(record).encode("utf-8")
    sent = {"Content-Type": "application/json", "User-Agent": "Postmark"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        sent["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    sent.update(headers)
    plain = parts._replace(netloc=parts.hostname or "").geturl()
    return WebhookRequest(method="POST", url=plain, headers=sent, body=body)


def events_for(secret_values: dict[str, str] | None = None, used: set[str] | None = None):
    used = set() if used is None else used
    return PostmarkEvents(
        settings={"message_stream": "outbound", "api_url": "https://api.postmarkapp.com"},
        secrets=SECRETS if secret_values is None else secret_values,
        seen=lambda key: key in used,
        now=lambda: NOW,
    )


def taken(record: Any) -> list[Event]:
    """verify() then parse(), as the service calls them."""
    events = events_for()
    request = posted(record)
    events.verify(request)
    found = events.parse(request)
    assert events.replay_keys == []  # Postmark has no nonce to remember
    return found


def hashed(record_type: str, *parts: str) -> str:
    """The id of a record that carries none: a digest of what Postmark's retry repeats."""
    digest = hashlib.sha256(json.dumps([record_type, *parts]).encode("utf-8")).hexdigest()
    return f"{record_type.lower()}:{digest}"


def ours(type_: EventType, at: datetime, event_id: str, detail: dict, **fields: Any) -> Event:
    """An event of a sample record: each carries Postmark's MessageID and our email id."""
    common = {"recipient": JOHN, "provider_message_id": MESSAGE_ID, "email_id": "1234"}
    given = {**common, **fields}
    return Event(type_, occurred_at=at, provider_event_id=event_id, detail=detail, **given)


# Postmark's documented records (its examples), with our Metadata echoed ----------------------


# fmt: off
def delivery(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
        "MessageID": MESSAGE_ID, "Recipient": JOHN, "Tag": "welcome-email",
        "DeliveredAt": "2019-11-05T16:33:54.9070259-04:00",
        "Details": "smtp;250 2.0.0 OK 1480624905 l186si10190883ite.73 - gsmtp",
        "Metadata": {"email_id": "1234", "a_key": "a_value"},
        **changes,
    }


def bounce(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test",
        "MessageID": MESSAGE_ID, "Metadata": {"email_id": "1234"}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": JOHN, "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True,
        "CanActivate": True, "Subject": "Test subject", "Content": "<Full dump of bounce>",
        **changes,
    }


def complaint(**changes: Any) -> dict[str, Any]:
    return bounce(**{
        "RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "TypeCode": 100001,
        "Name": "Spam complaint", "Description": "", "Details": "Test spam complaint details",
        "CanActivate": False,
        **changes,
    })


def opened(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "Open", "MessageStream": "outbound", "Metadata": {"email_id": "1234"},
        "FirstOpen": True, "Client": {"Name": "Chrome 35.0.1916.153", "Family": "Chrome"},
        "OS": {"Name": "OS X 10.7 Lion", "Family": "OS X 10"}, "Platform": "WebMail",
        "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5)", "ReadSeconds": 5,
        "Geo": {"CountryISOCode": "RS", "City": "Novi Sad", "IP": "188.2.95.4"},
        "MessageID": MESSAGE_ID, "ReceivedAt": "2019-11-05T16:33:54.9070259Z",
        "Tag": "welcome-email", "Recipient": JOHN,
        **changes,
    }


def clicked(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "Click", "MessageStream": "outbound", "Metadata": {"email_id": "1234"},
        "ClickLocation": "HTML", "Client": {"Name": "Chrome 35.0.1916.153", "Family": "Chrome"},
        "OS": {"Name": "OS X 10.7 Lion", "Family": "OS X 10"}, "Platform": "Desktop",
        "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5)",
        "OriginalLink": LINK, "Geo": {"CountryISOCode": "RS", "IP": "8.8.8.8"},
        "MessageID": MESSAGE_ID, "ReceivedAt": "2017-10-25T15:21:11.9065619Z",
        "Tag": "welcome-email", "Recipient": JOHN,
        **changes,
    }


def subscription(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "SubscriptionChange", "MessageID": MESSAGE_ID, "ServerID": 123456,
        "MessageStream": "outbound", "ChangedAt": "2020-02-01T10:53:34.416071Z",
        "Recipient": "bounced-address@wildbit.com", "Origin": "Recipient",
        "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "my-tag",
        "Metadata": {"email_id": "1234"},
        **changes,
    }
# fmt: on


# Accepted and normalized ---------------------------------------------------------------------


def test_the_spec_names_these_events():
    module, _, name = postmark.SPEC.events.partition(":")
    assert getattr(importlib.import_module(module), name) is PostmarkEvents
    assert PostmarkEvents.kind == "postmark"
    webhook_only = {o.name for o in postmark.SPEC.secrets if not o.transport}
    assert webhook_only == {"webhook_username", "webhook_password"}


def test_a_delivery():
    stamp = "2019-11-05T16:33:54.9070259-04:00"
    diagnostic = "smtp;250 2.0.0 OK 1480624905 l186si10190883ite.73 - gsmtp"
    assert taken(delivery()) == [
        ours(
            EventType.DELIVERED,
            datetime(2019, 11, 5, 20, 33, 54, 907025, tzinfo=UTC),
            hashed("Delivery", MESSAGE_ID, JOHN, stamp),
            {"event": "Delivery", "diagnostic": diagnostic},
        )
    ]


def test_a_hard_bounce():
    record = bounce()
    [event] = taken(record)
    assert event == ours(
        EventType.BOUNCED,
        datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC),
        "bounce:4323372036854775807",
        {
            "event": "Bounce",
            "type": "HardBounce",
            "code": 1,
            "description": record["Description"],
            "diagnostic": record["Details"],
        },
        bounce_type=BounceType.HARD,
    )
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("bounce_type", "code", "expected"),
    [
        ("BadEmailAddress", 100000, (EventType.BOUNCED, BounceType.HARD)),
        ("ManuallyDeactivated", 100002, (EventType.BOUNCED, BounceType.HARD)),
        ("SoftBounce", 4096, (EventType.BOUNCED, BounceType.SOFT)),
        ("Transient", 2, (EventType.BOUNCED, BounceType.SOFT)),
        ("DnsError", 256, (EventType.BOUNCED, BounceType.SOFT)),
        ("SpamNotification", 512, (EventType.BOUNCED, BounceType.SOFT)),
        ("Unknown", 2048, (EventType.BOUNCED, BounceType.SOFT)),
        ("VirusNotification", 8192, (EventType.BOUNCED, BounceType.SOFT)),
        ("Blocked", 100006, (EventType.BOUNCED, BounceType.SOFT)),
        ("DMARCPolicy", 100009, (EventType.BOUNCED, BounceType.SOFT)),
        ("SomethingNew", 200000, (EventType.BOUNCED, BounceType.SOFT)),  # not listed: soft
        ("SpamComplaint", 100001, (EventType.COMPLAINED, None)),
        ("Unsubscribe", 16, (EventType.UNSUBSCRIBED, None)),
        ("Unconfirmed", 100003, (EventType.DROPPED, None)),
        ("SMTPApiError", 100007, (EventType.DROPPED, None)),
        ("TemplateRenderingFailed", 100010, (EventType.DROPPED, None)),
    ],
)
def test_each_bounce_type(bounce_type, code, expected):
    [event] = taken(bounce(Type=bounce_type, TypeCode=code, ID=7))
    assert (event.type, event.bounce_type) == expected
    assert (event.provider_event_id, event.recipient, event.email_id) == ("bounce:7", JOHN, "1234")
    assert (event.detail["type"], event.detail["code"]) == (bounce_type, code)


NO_DELIVERY = "Subscribe AutoResponder AddressChange OpenRelayTest ChallengeVerification"


@pytest.mark.parametrize("bounce_type", [*NO_DELIVERY.split(), "InboundError"])
def test_bounce_types_about_no_delivery_are_skipped(bounce_type):
    assert taken(bounce(Type=bounce_type)) == []


def test_a_spam_complaint():
    assert taken(complaint()) == [
        ours(
            EventType.COMPLAINED,
            datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC),
            "bounce:42",
            {
                "event": "SpamComplaint",
                "type": "SpamComplaint",
                "code": 100001,
                "diagnostic": "Test spam complaint details",
            },
        )
    ]
    # The same complaint posted by the bounce webhook too is the same event.
    [again] = taken(bounce(ID=42, Type="SpamComplaint", TypeCode=100001))
    assert (again.type, again.provider_event_id) == (EventType.COMPLAINED, "bounce:42")


def test_an_open():
    assert taken(opened()) == [
        ours(
            EventType.OPENED,
            datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC),
            hashed("Open", MESSAGE_ID, JOHN, "2019-11-05T16:33:54.9070259Z"),
            {"event": "Open", "first_open": True},
        )
    ]


def test_a_click():
    assert taken(clicked()) == [
        ours(
            EventType.CLICKED,
            datetime(2017, 10, 25, 15, 21, 11, 906561, tzinfo=UTC),
            hashed("Click", MESSAGE_ID, JOHN, "2017-10-25T15:21:11.9065619Z", LINK),
            {"event": "Click", "url": LINK},
        )
    ]
    # Two links clicked in the same instant are two events.
    [other] = taken(clicked(OriginalLink="https://example.com/other"))
    assert other.provider_event_id != taken(clicked())[0].provider_event_id


def test_an_unsubscribe():
    address, stamp = "bounced-address@wildbit.com", "2020-02-01T10:53:34.416071Z"
    assert taken(subscription()) == [
        ours(
            EventType.UNSUBSCRIBED,
            datetime(2020, 2, 1, 10, 53, 34, 416071, tzinfo=UTC),
            hashed("SubscriptionChange", MESSAGE_ID, address, stamp),
            {"event": "SubscriptionChange", "reason": "ManualSuppression", "origin": "Recipient"},
            recipient=address,
        )
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("HardBounce", (EventType.BOUNCED, BounceType.HARD)),
        ("SpamComplaint", (EventType.COMPLAINED, None)),
        ("ManualSuppression", (EventType.UNSUBSCRIBED, None)),
        (None, (EventType.UNSUBSCRIBED, None)),
    ],
)
def test_a_suppression_keeps_its_reason(reason, expected):
    [event] = taken(subscription(SuppressionReason=reason))
    assert (event.type, event.bounce_type) == expected


def test_a_suppression_by_hand_is_about_no_message():
    [event] = taken(subscription(MessageID=None, Origin="Customer", Metadata={}, Tag=None))
    assert (event.type, event.provider_message_id, event.email_id) == (UNSUBSCRIBED, "", "")
    assert event.detail["origin"] == "Customer"


def test_a_reactivation_is_skipped():
    record = subscription(SuppressSending=False, SuppressionReason=None, Metadata={})
    assert taken(record) == []


@pytest.mark.parametrize("record_type", ["Inbound", "SomethingNew"])
def test_other_record_types_are_skipped(record_type):
    assert taken({**delivery(), "RecordType": record_type}) == []


def test_site_mail_without_metadata_has_no_email_id():
    [event] = taken(delivery(Metadata={}))
    assert event.email_id == ""
    [event] = taken({k: v for k, v in delivery().items() if k != "Metadata"})
    assert event.email_id == ""


def test_times_are_utc_and_details_are_bounded():
    [event] = taken(bounce(BouncedAt="2019-11-05T16:33:54", Details="x\x00" * 400))
    assert event.occurred_at == datetime(2019, 11, 5, 16, 33, 54, tzinfo=UTC)  # no offset: UTC
    assert len(event.detail["diagnostic"]) == 500
    assert (
        event.detail["diagnostic"].startswith("x x x") and "\x00" not in event.detail["diagnostic"]
    )
    [event] = taken(delivery(DeliveredAt="2016-12-01T15:41:45-05:00"))
    assert event.occurred_at == datetime(2016, 12, 1, 20, 41, 45, tzinfo=UTC)


def test_the_ids_match_what_the_transport_stored(postmark_server):
    """Postmark echoes the Metadata we sent and the MessageID /email answered with."""
    message = EmailMessage("Hi", "Hello.", "sender@example.com", ["rcpt@example.org"])
    message.metadata = {"email_id": "77"}
    stored = POSTMARK.provider(postmark_server).send(message)
    [sent] = postmark_server.messages
    [event] = taken(delivery(MessageID=sent["_message_id"], Metadata=sent["Metadata"]))
    assert (event.provider_message_id, event.email_id) == (stored, "77")


# What Postmark does not let us check ---------------------------------------------------------


def test_a_retry_is_taken_again_with_the_same_event_id():
    """No nonce: Postmark's retry and a replay look the same, so both pass verify(); the event
    id is the same, so the service stores it once."""
    used: set[str] = set()
    ids = []
    for _ in range(2):
        events = events_for(used=used)
        request = posted(delivery())
        events.verify(request)
        ids.append(events.parse(request)[0].provider_event_id)
        used.update(events.replay_keys)
    assert ids[0] == ids[1]
    assert used == set()


def test_the_body_is_not_covered_by_the_credentials():
    request = posted(delivery())
    changed = request.body.replace(b"john@", b"jane@", 1)
    assert changed != request.body
    events_for().verify(
        WebhookRequest(method="POST", url=request.url, headers=request.headers, body=changed)
    )


def test_an_old_request_is_not_refused():
    """Nothing in it says when it was sent; an event's own time is not its request's."""
    events_for().verify(posted(bounce(BouncedAt="2024-01-01T00:00:00Z")))


# Refused -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password"),
    [
        (USER, PASSWORD + "x"),
        (USER, PASSWORD[:-1]),
        (USER + "x", PASSWORD),
        (PASSWORD, USER),
        (USER, ""),
        ("", ""),
    ],
)
def test_wrong_credentials_are_refused(user, password):
    request = posted(delivery(), url=hook_url(user, password))
    with pytest.raises(Unauthenticated) as refused:
        events_for().verify(request)
    assert PASSWORD not in str(refused.value) and USER not in str(refused.value)


def test_other_credentials_are_refused():
    other = {**SECRETS, "webhook_password": secrets.token_urlsafe(24)}
    with pytest.raises(Unauthenticated):
        events_for(other).verify(posted(delivery()))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(USER.encode()).decode(),  # no colon
        "Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        f"Basic {USER}:{PASSWORD}",  # not encoded
    ],
)
def test_a_request_without_basic_credentials_is_refused(authorization):
    request = posted(delivery(), url=HOOK)
    if authorization is not None:
        request = posted(delivery(), url=HOOK, Authorization=authorization)
    with pytest.raises(Unauthenticated):
        events_for().verify(request)


@pytest.mark.parametrize(
    "configured",
    [
        {"server_token": "token"},
        {"server_token": "token", "webhook_username": USER},
        {"server_token": "token", "webhook_password": PASSWORD},
        {"server_token": "token", "webhook_username": "", "webhook_password": ""},
    ],
)
def test_a_config_without_webhook_credentials_takes_nothing(configured):
    with pytest.raises(Unauthenticated) as refused:
        events_for(configured).verify(posted(delivery()))
    assert PASSWORD not in str(refused.value) and USER not in str(refused.value)


def test_the_scheme_is_case_insensitive():
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    events_for().verify(posted(delivery(), url=HOOK, Authorization=f"basic {token}"))


# Malformed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps("Delivery").encode(),
        json.dumps(42).encode(),
        json.dumps([delivery()]).encode(),
        json.dumps([delivery()] * 1001).encode(),
    ],
    ids=["broken", "not-utf8", "deep", "string", "number", "list", "huge-list"],
)
def test_a_body_that_is_not_one_record_is_malformed(body):
    events = events_for()
    request = posted(body)
    events.verify(request)
    with pytest.raises(Malformed):
        events.parse(request)


@pytest.mark.parametrize(
    "record",
    [
        {k: v for k, v in delivery().items() if k != "RecordType"},
        delivery(RecordType=7),
        delivery(Recipient=None),
        delivery(Recipient=["john@example.com"]),
        delivery(Recipient="x" * 400 + "@example.com"),
        {k: v for k, v in delivery().items() if k != "DeliveredAt"},
        delivery(DeliveredAt="yesterday"),
        delivery(MessageID=12),
        delivery(Metadata=["email_id", "1234"]),
        delivery(Metadata={"email_id": 1234}),
        bounce(Email=None),
        bounce(ID="42"),
        bounce(ID=True),
        {k: v for k, v in bounce().items() if k != "ID"},
        bounce(Type=None),
        complaint(ID=None),
        opened(ReceivedAt=None),
        clicked(Recipient=""),
        subscription(SuppressSending="true"),
        subscription(ChangedAt="2020-02-31T00:00:00Z"),
    ],
)
def test_a_record_not_as_documented_is_malformed(record):
    with pytest.raises(Malformed):
        taken(record)
