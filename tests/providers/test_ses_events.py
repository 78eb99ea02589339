"""SES events through SNS: real RSA signatures (v1 SHA1, v2 SHA256) over the string SNS documents,
a self-signed certificate served by a fetch function, a fixed clock and a replay set."""

from __future__ import annotations

import base64
import importlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.core.mail import EmailMessage

from mailer.providers import spec_for
from mailer.providers.base import ProviderUnavailable
from mailer.providers.events import (
    BounceType,
    Event,
    EventType,
    Handshake,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from mailer.providers.ses import events as ses_events
from mailer.providers.ses.events import SesEvents
from mailer.providers.ses.transport import SesProvider
from tests.fakes.ses import DUMMY_KEYS, REGION

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    "&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-events&Token=2336412f37"
)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
SNS_ID = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
SES_ID = "010001956f1a2b3c-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718-000000"
A, B = "a@example.org", "b@example.org"


def make_certificate(key, *, days: int = 365) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Fetcher:
    """The service's pinned fetch, standing in: serves documents by URL, records each call."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        self.documents, self.calls = documents, []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.documents:
            raise ProviderUnavailable(f"{url} answered HTTP 404", code="404")
        return self.documents[url]


@pytest.fixture
def fetch(key):
    return Fetcher({CERT_URL: make_certificate(key), SUBSCRIBE_URL: b"<ConfirmSubscription/>"})


@pytest.fixture(autouse=True)
def _no_cached_certificates():
    ses_events.forget_certificates()
    yield
    ses_events.forget_certificates()


def sns_string_to_sign(message: dict) -> bytes:
    """As AWS documents it: "Key\\nvalue\\n" for these keys in this order (Subject if present)."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{message[k]}\n" for k in keys if k in message).encode()


def sign(message: dict, key, version: str = "1") -> dict:
    message = {**message, "SignatureVersion": version}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(sns_string_to_sign(message), padding.PKCS1v15(), digest)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def envelope(record, *, kind="Notification", at=NOW, **fields) -> dict:
    message = record if isinstance(record, str) else json.dumps(record)
    body = {
        "Type": kind,
        "MessageId": SNS_ID,
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SigningCertURL": CERT_URL,
        **fields,
    }
    if kind == "Notification":
        body["UnsubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    return body


def request(body: dict | bytes, *, message_type: str | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = message_type or (body.get("Type", "") if isinstance(body, dict) else "")
    headers = {
        "x-amz-sns-message-type": kind,
        "x-amz-sns-message-id": SNS_ID,
        "x-amz-sns-topic-arn": TOPIC,
        "Content-Type": "text/plain; charset=UTF-8",
    }
    return WebhookRequest("POST", "https://mail.example.com/webhooks/ses/k3y", headers, raw)


def build(fetch=None, *, used=(), settings=None, now=NOW) -> SesEvents:
    used = set(used)
    return SesEvents(
        settings=settings or {},
        secrets={},
        seen=lambda key: key in used,
        now=lambda: now,
        fetch=fetch,
    )


def signed(key, record=None, *, version="1", **fields) -> WebhookRequest:
    """A Notification (a hard bounce unless told) signed with `key`, as a request."""
    return request(sign(envelope(record or bounce("Permanent", A), **fields), key, version))


def taken(record, key, fetch) -> list[Event]:
    """A signed Notification of `record`, verified and parsed as the service does."""
    webhook = signed(key, record)
    events = build(fetch)
    events.verify(webhook)
    assert events.handshake(webhook) is None
    return events.parse(webhook)


def mail(*destination: str, tags: dict | None = None) -> dict:
    return {
        "timestamp": "2025-03-01T11:58:00.000Z",
        "source": "sender@example.com",
        "sendingAccountId": "123456789012",
        "messageId": SES_ID,
        "destination": list(destination or [A]),
        "headersTruncated": False,
        "tags": tags if tags is not None else {"ses:configuration-set": ["ev"], "email_id": ["42"]},
    }


def published(event_type: str, section_key: str, section: dict, *destination: str) -> dict:
    return {"eventType": event_type, "mail": mail(*destination), section_key: section}


def many(n: int) -> list[str]:
    return [f"r{i}@example.org" for i in range(n)]


STAMP = "2025-03-01T11:59:30.000Z"  # NOW - 30 s: each section's own timestamp
MAIL_TIME = datetime(2025, 3, 1, 11, 58, tzinfo=UTC)


def ev(kind, recipient, *, at=NOW - timedelta(seconds=30), bounce=None, email="42", **detail):
    """The Event expected, every field; `detail` as keywords."""
    return Event(
        type=kind,
        recipient=recipient,
        occurred_at=at,
        provider_event_id=f"{SNS_ID}:{recipient}",
        provider_message_id=SES_ID,
        email_id=email,
        bounce_type=bounce,
        detail=detail,
    )


# fmt: off
# SES's records as its documentation shows them, and the Events each must give: a table.
def bounce(bounce_type: str, *recipients: str) -> dict:
    items = [{"emailAddress": r, "action": "failed", "status": "5.1.1",
              "diagnosticCode": "smtp; 550"} for r in recipients]
    section = {"bounceType": bounce_type, "bounceSubType": "General", "timestamp": STAMP}
    return published("Bounce", "bounce", {**section, "bouncedRecipients": items}, *recipients)


def bounced(recipient, bounce_type, hard, **kwargs):
    return ev(EventType.BOUNCED, recipient, bounce=BounceType.HARD if hard else BounceType.SOFT,
              event="Bounce", bounce_type=bounce_type, bounce_subtype="General", code="5.1.1",
              diagnostic="smtp; 550", **kwargs)


def preferences(status: str) -> dict:
    return {"unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "weekly", "subscriptionStatus": status}]}


SUBSCRIPTION = {"contactList": "news", "timestamp": STAMP, "source": "UnsubscribeHeader",
                "newTopicPreferences": preferences("OptOut"),
                "oldTopicPreferences": preferences("OptIn")}
COMPLAINT = {"complainedRecipients": [{"emailAddress": A}], "timestamp": STAMP,
             "feedbackId": "0100-f", "complaintFeedbackType": "abuse", "complaintSubType": None}
DELIVERY = {"timestamp": STAMP, "processingTimeMillis": 546, "recipients": [A, B],
            "smtpResponse": "250 ok", "reportingMTA": "a8-70.smtp-out.amazonses.com"}
DELAY = {"timestamp": STAMP, "delayType": "MailboxFull", "expirationTime": STAMP,
         "delayedRecipients": [{"emailAddress": B, "status": "4.2.2", "diagnosticCode": "452"}]}
OPEN = {"ipAddress": "192.0.2.1", "timestamp": STAMP, "userAgent": "X"}
LINK = "https://example.com/offer?utm=1"
CLICK = {**OPEN, "link": LINK, "linkTags": {"campaign": ["spring"]}}

CASES = {
    "bounce permanent": (bounce("Permanent", A), [bounced(A, "Permanent", True)]),
    "bounce transient, two recipients": (
        bounce("Transient", A, B), [bounced(r, "Transient", False) for r in (A, B)]),
    "bounce undetermined": (bounce("Undetermined", A), [bounced(A, "Undetermined", False)]),
    "complaint": (published("Complaint", "complaint", COMPLAINT),
                  [ev(EventType.COMPLAINED, A, event="Complaint", feedback_type="abuse")]),
    "delivery": (published("Delivery", "delivery", DELIVERY, A, B),
                 [ev(EventType.DELIVERED, r, event="Delivery", smtp_response="250 ok")
                  for r in (A, B)]),
    "reject (no timestamp of its own: the mail's)": (
        published("Reject", "reject", {"reason": "Bad content"}),
        [ev(EventType.DROPPED, A, at=MAIL_TIME, event="Reject", reason="Bad content")]),
    "delivery delay": (
        published("DeliveryDelay", "deliveryDelay", DELAY, A, B),
        [ev(EventType.DEFERRED, B, event="DeliveryDelay", delay_type="MailboxFull",
            code="4.2.2", diagnostic="452")]),
    "open, two recipients": (published("Open", "open", OPEN, A, B),
                             [ev(EventType.OPENED, r, event="Open") for r in (A, B)]),
    "click": (published("Click", "click", CLICK),
              [ev(EventType.CLICKED, A, event="Click", url=LINK)]),
    "subscription: a topic opted out": (
        published("Subscription", "subscription", SUBSCRIPTION),
        [ev(EventType.UNSUBSCRIBED, A, event="Subscription", contact_list="news",
            source="UnsubscribeHeader", unsubscribe_all="false", topics="weekly")]),
    "feedback notification (no tags: matched by message id)": (
        {"notificationType": "Bounce", "mail": {**mail(A), "tags": None},
         "bounce": bounce("Permanent", A)["bounce"]},
        [bounced(A, "Permanent", True, email="")]),
    "send: skipped": (published("Send", "send", {}), []),
    "rendering failure: skipped": (
        published("Rendering Failure", "failure", {"errorMessage": "x", "templateName": "t"}), []),
    "subscription opting in: skipped": (
        published("Subscription", "subscription",
                  {**SUBSCRIPTION, "newTopicPreferences": preferences("OptIn")}), []),
    "SES testing a feedback topic: skipped": (
        {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have..."}, []),
}
# fmt: on


@pytest.mark.parametrize("record, events", CASES.values(), ids=CASES.keys())
def test_each_ses_record_is_normalized(record, events, key, fetch):
    assert taken(record, key, fetch) == events
    assert fetch.calls == [CERT_URL]


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_are_verified_and_remembered_against_replays(version, key, fetch):
    webhook = signed(key, version=version)
    first = build(fetch)
    first.verify(webhook)
    assert first.replay_keys == [f"ses:{SNS_ID}"]
    # The service remembers the keys once the events are stored; the same request then fails.
    with pytest.raises(Unauthenticated, match="replay"):
        build(fetch, used=first.replay_keys).verify(webhook)


def test_a_subject_is_part_of_the_signed_string(key, fetch):
    webhook = signed(key, Subject="Amazon SES Email")
    build(fetch).verify(webhook)
    tampered = webhook.body.replace(b"Amazon SES Email", b"Amazon SES Emails")
    with pytest.raises(Unauthenticated, match="signature"):
        build(fetch).verify(request(tampered, message_type="Notification"))


def test_details_are_cut_a_recipient_twice_is_one_event_and_1000_are_taken(key, fetch):
    record = bounce("Permanent", A, A)
    record["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = "x" * 2000
    [event] = taken(record, key, fetch)
    assert event.detail["diagnostic"] == "x" * 500
    record = published("Delivery", "delivery", {"recipients": many(1000)})
    assert len(taken(record, key, fetch)) == 1000


def unauthenticated(webhook, fetch, **kwargs):
    with pytest.raises(Unauthenticated) as caught:
        build(fetch, **kwargs).verify(webhook)
    return str(caught.value)


def test_one_byte_changed_another_key_or_another_hash_is_refused(key, other_key, fetch):
    body = signed(key).body
    tampered = body.replace(b"5.1.1", b"5.1.2", 1)
    assert tampered != body
    assert "signature" in unauthenticated(request(tampered, message_type="Notification"), fetch)
    assert "signature" in unauthenticated(signed(other_key), fetch)
    v1 = sign(envelope(bounce("Permanent", A)), key, "1")
    assert "signature" in unauthenticated(request({**v1, "SignatureVersion": "2"}), fetch)


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_stale_or_future_timestamp_is_refused_before_any_fetch(offset, key, fetch):
    assert "stale" in unauthenticated(signed(key, at=NOW + offset), fetch)
    assert fetch.calls == []


UNSIGNED = {
    "Signature": (None, "not signed"),
    "Signature=''": ("", "not signed"),
    "Signature=junk": ("not base64!", "not base64"),
    "SignatureVersion": (None, "SignatureVersion"),
    "SignatureVersion=3": ("3", "SignatureVersion"),
    "Type=Unknown": ("Unknown", "no known Type"),
    "MessageId": (None, "no MessageId"),
    "TopicArn": (None, "no TopicArn"),
    "Timestamp=yesterday": ("yesterday", "Timestamp"),
}


@pytest.mark.parametrize(
    "field, value, reason",
    [(k.split("=")[0], *v) for k, v in UNSIGNED.items()],
    ids=UNSIGNED.keys(),
)
def test_unsigned_or_incomplete_messages_are_refused(field, value, reason, key, fetch):
    message = sign(envelope(bounce("Permanent", A)), key)
    body = {k: v for k, v in {**message, field: value}.items() if v is not None}
    assert reason in unauthenticated(request(body, message_type="Notification"), fetch)
    assert fetch.calls == []


def test_the_message_type_header_must_match_the_signed_type(key, fetch):
    message = sign(envelope(bounce("Permanent", A)), key)
    unauthenticated(request(message, message_type="SubscriptionConfirmation"), fetch)
    webhook = request(message)
    headers = {k: v for k, v in webhook.headers.items() if k != "x-amz-sns-message-type"}
    unauthenticated(WebhookRequest("POST", webhook.url, headers, webhook.body), fetch)
    assert fetch.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://s3.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem.txt",
        "https://sns.us-east-1.amazonaws.com/cert",
        "https://me@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "//sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "",
    ],
)
def test_a_certificate_url_off_sns_is_refused_without_fetching(url, key, fetch):
    fetch.documents[url] = fetch.documents[CERT_URL]
    unauthenticated(signed(key, SigningCertURL=url), fetch)
    assert fetch.calls == []


def test_the_sns_host_pattern_is_a_setting(key, fetch, settings):
    settings.SNS_HOST_PATTERN = r"^sns\.test$"
    url = "https://sns.test:8443/cert.pem"
    fetch.documents[url] = fetch.documents[CERT_URL]
    build(fetch).verify(signed(key, SigningCertURL=url))
    unauthenticated(signed(key), fetch)
    assert fetch.calls == [url]


def test_no_fetcher_or_a_bad_certificate_is_refused(key):
    webhook = signed(key)
    assert "fetch" in unauthenticated(webhook, None)
    assert "PEM" in unauthenticated(webhook, Fetcher({CERT_URL: b"<html>not a cert</html>"}))
    expired = Fetcher({CERT_URL: make_certificate(key, days=-1)})
    assert "not valid now" in unauthenticated(webhook, expired)


def test_a_failed_fetch_goes_up_and_is_not_cached(key, fetch):
    webhook = signed(key)
    with pytest.raises(ProviderUnavailable):
        build(Fetcher({})).verify(webhook)
    build(fetch).verify(webhook)
    assert fetch.calls == [CERT_URL]


def test_certificates_are_cached_per_url_and_the_cache_is_bounded(key, fetch):
    pem = fetch.documents[CERT_URL]
    urls = [f"https://sns.us-east-1.amazonaws.com/c{i}.pem" for i in range(55)]
    fetch.documents.update(dict.fromkeys(urls, pem))
    for url in [*urls, urls[-1]]:
        build(fetch).verify(signed(key, SigningCertURL=url))
    assert fetch.calls == urls  # the last one a second time came from the cache
    assert len(ses_events._certificates) == ses_events.CERT_CACHE_SIZE
    build(fetch).verify(signed(key, SigningCertURL=urls[0]))
    assert fetch.calls == [*urls, urls[0]]  # the oldest had been dropped


def test_the_topic_is_checked_only_where_a_config_names_one(key, fetch):
    webhook = signed(key)
    build(fetch, settings={"topic_arn": TOPIC}).verify(webhook)
    other = {"topic_arn": "arn:aws:sns:us-east-1:999999999999:theirs"}
    assert "topic" in unauthenticated(webhook, fetch, settings=other)


# Subscription handshakes --------------------------------------------------------------------


def confirmation(key, kind="SubscriptionConfirmation", subscribe_url=SUBSCRIBE_URL) -> dict:
    fields = {"Token": "2336412f37", "SubscribeURL": subscribe_url}
    return sign(envelope("You have chosen to subscribe to the topic", kind=kind, **fields), key)


@pytest.mark.parametrize(
    "kind, answer, fetched",
    [
        ("SubscriptionConfirmation", "subscription confirmed", [CERT_URL, SUBSCRIBE_URL]),
        ("UnsubscribeConfirmation", "ok", [CERT_URL]),  # nothing to confirm
    ],
)
def test_a_subscription_is_confirmed_by_fetching_its_url(kind, answer, fetched, key, fetch):
    webhook = request(confirmation(key, kind))
    events = build(fetch)
    events.verify(webhook)
    assert events.handshake(webhook) == Handshake(200, answer)
    assert events.parse(webhook) == []
    assert fetch.calls == fetched


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://evil.example/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com@evil.example/?Action=ConfirmSubscription",
    ],
)
def test_a_subscribe_url_off_sns_is_never_fetched(url, key, fetch):
    webhook = request(confirmation(key, subscribe_url=url))
    events = build(fetch)
    events.verify(webhook)
    with pytest.raises(Unauthenticated, match="SubscribeURL"):
        events.handshake(webhook)
    assert fetch.calls == [CERT_URL]


def test_no_handshake_for_a_request_that_was_not_verified(key, fetch):
    webhook = request(confirmation(key))
    with pytest.raises(Unauthenticated):
        build(fetch).handshake(webhook)
    other = build(fetch)
    other.verify(request(confirmation(key, subscribe_url=SUBSCRIBE_URL + "&x=1")))
    with pytest.raises(Unauthenticated):
        other.handshake(webhook)  # verified a different body
    assert fetch.calls == [CERT_URL]


# Malformed: signed, but not what SES documents ----------------------------------------------


MALFORMED = {
    "message not JSON": "{not json",
    "message a list": [1, 2],
    "no event type": {"mail": mail()},
    "no mail": {"eventType": "Delivery", "delivery": {"recipients": [A]}},
    "no section": {"eventType": "Bounce", "mail": mail()},
    "no message id": {**published("Open", "open", {}), "mail": {**mail(), "messageId": ""}},
    "recipients not a list": published("Delivery", "delivery", {"recipients": A}),
    "recipient without address": published(
        "Bounce", "bounce", {"bounceType": "Permanent", "bouncedRecipients": [{"status": "5"}]}
    ),
    "bad timestamp": published("Delivery", "delivery", {"recipients": [A], "timestamp": "soon"}),
    "tags not an object": {**published("Open", "open", {}), "mail": mail(tags=["email_id"])},
    "subscription without preferences": published("Subscription", "subscription", {}),
    "1001 recipients": published("Delivery", "delivery", {"recipients": many(1001)}),
    "1001 destinations": published("Open", "open", {}, *many(1001)),
}


@pytest.mark.parametrize("record", MALFORMED.values(), ids=MALFORMED.keys())
def test_signed_but_malformed_records_are_refused(record, key, fetch):
    webhook = signed(key, record)
    events = build(fetch)
    events.verify(webhook)
    with pytest.raises(Malformed):
        events.parse(webhook)


@pytest.mark.parametrize("body", [b"{broken", b"[]", b'{"Type": "Other"}', b'{"Type": 1}'])
def test_a_body_that_is_no_sns_message_is_malformed_and_unauthenticated(body, fetch):
    with pytest.raises(Malformed):
        build(fetch).parse(request(body, message_type="Notification"))
    unauthenticated(request(body, message_type="Notification"), fetch)


# The spec and the transport's side: our id goes out as an SES message tag -------------------


def test_the_spec_names_these_events():
    module, name = spec_for("ses").events.split(":")
    assert getattr(importlib.import_module(module), name) is SesEvents


def message(email_id: str | None) -> EmailMessage:
    sent = EmailMessage("Hi", "Body", "sender@example.com", [A])
    if email_id is not None:
        sent.metadata = {"email_id": email_id}
    return sent


@pytest.mark.parametrize(
    "email_id, tags",
    [
        ("42", [{"Name": "email_id", "Value": "42"}]),
        ("0f1e-2d3c_4b.5a@x", [{"Name": "email_id", "Value": "0f1e-2d3c_4b.5a@x"}]),
        (None, None),  # site mail: no metadata
        ("", None),
        ("no spaces", None),  # SES refuses it; an altered id would match nothing
        ("x" * 257, None),
    ],
)
def test_the_email_id_travels_as_a_message_tag(email_id, tags):
    prepared = SesProvider(region=REGION, **DUMMY_KEYS).prepare(message(email_id))
    assert prepared.get("EmailTags") == tags


def test_ses_accepts_the_tag(ses):
    ses.verify("sender@example.com")
    provider = SesProvider(region=REGION, endpoint_url=ses.endpoint_url, **DUMMY_KEYS, timeout=2)
    message_id = provider.send(message("42"))
    assert [sent["id"] for sent in ses.sent()] == [message_id]
