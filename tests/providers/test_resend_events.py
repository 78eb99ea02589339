"""Resend's webhooks (mailer.providers.resend.events) against real Svix signatures: made here
with hmac from a fresh random secret as Resend's docs describe, plus the Standard Webhooks
example Resend's docs publish. The clock is fixed years away from the wall clock, so a check
against the real time would fail these tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from django.utils.datastructures import CaseInsensitiveMapping

from mailer.providers import spec_for
from mailer.providers.events import (
    MAX_AGE,
    BounceType,
    Event,
    EventType,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)
from mailer.providers.resend.events import ResendEvents

KEY = os.urandom(24)
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
SVIX_ID = "msg_2mLvKBIf4DvnTPXsTJTNfYrWZkP"
RESEND_ID = "56761188-7520-42d8-8898-ff6fc54ce618"
CREATED_AT = "2031-05-04T03:01:59.126Z"
OCCURRED_AT = datetime(2031, 5, 4, 3, 1, 59, 126000, tzinfo=UTC)


def signature(svix_id: str, stamp: str, body: bytes, key: bytes = KEY) -> str:
    mac = hmac.new(key, f"{svix_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed(body: bytes, *, svix_id: str = SVIX_ID, at: datetime = NOW, **headers) -> WebhookRequest:
    """A request as Svix posts it; `headers` replace or (None) remove Svix's."""
    stamp = str(int(at.timestamp()))
    sent = {
        "Svix-Id": svix_id,
        "Svix-Timestamp": stamp,
        "Svix-Signature": signature(svix_id, stamp, body),
    }
    for name, value in headers.items():
        sent.pop(name.replace("_", "-").title(), None)
        if value is not None:
            sent[name.replace("_", "-")] = value
    return WebhookRequest(
        method="POST",
        url="https://mail.example.com/webhooks/abc",
        headers=CaseInsensitiveMapping(sent),
        body=body,
    )


def event_body(kind: str, *, to=None, tags=None, **data) -> bytes:
    """An event as Resend's docs show it (webhooks/emails/<type>)."""
    payload = {
        "type": kind,
        "created_at": CREATED_AT,
        "data": {
            "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
            "created_at": "2031-05-04T03:01:58.894719+00:00",
            "email_id": RESEND_ID,
            "message_id": "<111-222-333@email.example.com>",
            "from": "Acme <onboarding@example.com>",
            "to": to if to is not None else ["Zoë <zoe@example.com>", "bob@example.org"],
            "subject": "Sending this example",
            "tags": tags if tags is not None else {"email_id": "42", "category": "welcome"},
            **data,
        },
    }
    return json.dumps(payload).encode()


class Service:
    """What mailer.services.events does around an Events: one per request, remembering each
    taken request's replay keys once its events are stored."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.secrets = {"api_key": "re_x", "webhook_secret": SECRET}

    def events(self) -> ResendEvents:
        return ResendEvents(
            settings={}, secrets=self.secrets, seen=lambda key: key in self.used, now=lambda: NOW
        )

    def take(self, request: WebhookRequest) -> list[Event]:
        events = self.events()
        events.verify(request)
        found = events.parse(request)
        self.used.update(events.replay_keys)
        return found


@pytest.fixture
def service() -> Service:
    return Service()


def expected(kind: EventType, name: str, detail=None, bounce_type=None) -> list[Event]:
    return [
        Event(
            type=kind,
            recipient=recipient,
            occurred_at=OCCURRED_AT,
            provider_event_id=f"{SVIX_ID}:{recipient}",
            provider_message_id=RESEND_ID,
            email_id="42",
            bounce_type=bounce_type,
            detail={"event": name, **(detail or {})},
        )
        for recipient in ("zoe@example.com", "bob@example.org")
    ]


BOUNCE = {
    "message": "The recipient's email address is on the suppression list because it has a "
    "recent history of producing hard bounces.",
    "subType": "Suppressed",
    "type": "Permanent",
}
CLICK = {
    "ipAddress": "122.115.53.11",
    "link": "https://example.com/welcome?ref=mail",
    "timestamp": "2031-05-04T03:01:59.163Z",
    "userAgent": "Mozilla/5.0",
}
BOUNCE_DETAIL = {
    "bounce_type": "Permanent",
    "bounce_subtype": "Suppressed",
    "diagnostic": BOUNCE["message"],
}

CASES = [
    ("email.delivered", {}, EventType.DELIVERED, {}, None),
    ("email.delivery_delayed", {}, EventType.DEFERRED, {}, None),
    ("email.bounced", {"bounce": BOUNCE}, EventType.BOUNCED, BOUNCE_DETAIL, BounceType.HARD),
    ("email.complained", {}, EventType.COMPLAINED, {}, None),
    ("email.opened", {}, EventType.OPENED, {}, None),
    ("email.clicked", {"click": CLICK}, EventType.CLICKED, {"url": CLICK["link"]}, None),
    (
        "email.failed",
        {"failed": {"reason": "reached_daily_quota"}},
        EventType.DROPPED,
        {"reason": "reached_daily_quota"},
        None,
    ),
    (
        "email.suppressed",
        {"suppressed": {"type": "OnAccountSuppressionList", "message": "Recently bounced."}},
        EventType.DROPPED,
        {"reason": "OnAccountSuppressionList", "diagnostic": "Recently bounced."},
        None,
    ),
]


# Accepted and normalized -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "kind", "detail", "bounce_type"), CASES)
def test_each_email_event_is_normalized_per_recipient(
    service, name, data, kind, detail, bounce_type
):
    found = service.take(signed(event_body(name, **data)))

    assert found == expected(kind, name, detail, bounce_type)
    assert all(event.occurred_at.tzinfo is UTC for event in found)
    assert service.used == {f"resend:{SVIX_ID}"}


@pytest.mark.parametrize(
    ("bounce", "bounce_type"),
    [
        ({"type": "Permanent", "subType": "General"}, BounceType.HARD),
        ({"type": "Transient", "subType": "MailboxFull"}, BounceType.SOFT),
        ({"type": "Undetermined", "subType": "Undetermined"}, BounceType.SOFT),
    ],
)
def test_bounce_type_follows_resends_permanent_transient_undetermined(service, bounce, bounce_type):
    (event, _) = service.take(signed(event_body("email.bounced", bounce=bounce)))

    assert event.bounce_type is bounce_type
    assert event.detail["bounce_subtype"] == bounce["subType"]


def test_a_bounce_detail_is_cut_and_carries_its_diagnostic_code(service):
    bounce = {"type": "Permanent", "message": "x" * 900, "diagnosticCode": ["550 5.1.1 unknown"]}

    (event, _) = service.take(signed(event_body("email.bounced", bounce=bounce)))

    assert event.detail == {
        "event": "email.bounced",
        "bounce_type": "Permanent",
        "diagnostic": "x" * 500,
        "code": "550 5.1.1 unknown",
    }


@pytest.mark.parametrize(
    ("tags", "email_id"),
    [
        ({"email_id": "42"}, "42"),  # the object Resend's docs show
        ([{"name": "category", "value": "a"}, {"name": "email_id", "value": "42"}], "42"),
        ({}, ""),  # site mail: no tag
        ({"email_id": "4 2<"}, ""),  # not a value the transport sends
        ({"email_id": 42}, ""),
    ],
)
def test_our_email_id_comes_from_the_email_id_tag_in_either_shape(service, tags, email_id):
    (event, _) = service.take(signed(event_body("email.delivered", tags=tags)))

    assert event.email_id == email_id
    assert event.provider_message_id == RESEND_ID


def test_recipients_are_bare_addresses_each_once_up_to_a_thousand(service):
    to = ["A <a@example.com>", "A@Example.com"] + [f"r{n}@example.com" for n in range(998)]

    found = service.take(signed(event_body("email.delivered", to=to)))

    assert [event.recipient for event in found[:2]] == ["a@example.com", "r0@example.com"]
    assert len(found) == 999


def test_a_long_address_still_gives_a_stable_event_id_that_fits(service):
    address = "a" * 64 + "@" + ("b" * 60 + ".") * 3 + "example.com"
    body = event_body("email.delivered", to=[address])

    (first,) = service.take(signed(body))
    (again,) = Service().take(signed(body, at=NOW + timedelta(seconds=5)))  # a Svix retry

    assert first.recipient == address
    assert len(first.provider_event_id) <= 255
    assert first.provider_event_id.startswith(f"{SVIX_ID}:")
    assert again.provider_event_id == first.provider_event_id


@pytest.mark.parametrize(
    "name",
    [
        "email.sent",
        "email.scheduled",
        "email.received",
        "contact.created",
        "domain.updated",
        "suppression.added",
        "email.some_future_event",
    ],
)
def test_events_with_no_meaning_for_delivery_are_skipped(service, name):
    body = json.dumps({"type": name, "created_at": CREATED_AT, "data": {"id": "x"}}).encode()

    assert service.take(signed(body)) == []


def test_secret_rotation_any_v1_signature_may_match(service):
    body = event_body("email.delivered")
    stamp = str(int(NOW.timestamp()))
    good = signature(SVIX_ID, stamp, body)
    other = signature(SVIX_ID, stamp, body, key=os.urandom(24))
    request = signed(body, svix_signature=f"v1a,{good[3:]} {other} {good}")

    assert len(service.take(request)) == 2


def test_resends_published_example_verifies_at_its_own_time():
    """The example in Resend's "Verify webhooks requests" (Svix's): 2021, years from the wall
    clock; its body is no event, so it verifies and then can't be read."""
    events = ResendEvents(
        settings={},
        secrets={"webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        seen=lambda key: False,
        now=lambda: datetime.fromtimestamp(1614265330, UTC) + timedelta(seconds=30),
    )
    request = WebhookRequest(
        method="POST",
        url="https://mail.example.com/webhooks/abc",
        headers=CaseInsensitiveMapping(
            {
                "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "svix-timestamp": "1614265330",
                "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            }
        ),
        body=b'{"test": 2432232314}',
    )

    events.verify(request)

    assert events.replay_keys == ["resend:msg_p5jXN8AQM9LWM0D4loKWxJek"]
    with pytest.raises(Malformed):
        events.parse(request)


def test_the_spec_names_these_events_and_a_webhook_only_secret():
    spec = spec_for("resend")
    module, name = spec.events.split(":")

    assert getattr(importlib.import_module(module), name) is ResendEvents
    assert spec.option("webhook_secret").transport is False


# Refused: nothing believed -----------------------------------------------------------------


def test_one_changed_byte_of_the_body_is_refused(service):
    body = event_body("email.delivered")
    request = signed(body)
    altered = body.replace(b'"42"', b'"43"')
    assert altered != body

    with pytest.raises(Unauthenticated, match="no v1 signature matches"):
        service.take(WebhookRequest("POST", request.url, request.headers, altered))


@pytest.mark.parametrize(
    "offset", [-MAX_AGE - timedelta(seconds=1), MAX_AGE + timedelta(seconds=1)]
)
def test_a_stale_or_future_timestamp_is_refused(service, offset):
    with pytest.raises(Unauthenticated, match="stale"):
        service.take(signed(event_body("email.delivered"), at=NOW + offset))


def test_a_timestamp_within_max_age_is_taken(service):
    assert service.take(signed(event_body("email.delivered"), at=NOW - MAX_AGE))


def test_a_replayed_svix_id_is_refused_once_its_events_are_stored(service):
    body = event_body("email.delivered")
    first = signed(body)
    unstored = service.events()
    unstored.verify(first)  # the service failed to store: Svix retries with the same id

    service.take(signed(body, at=NOW + timedelta(seconds=5)))
    with pytest.raises(Unauthenticated, match="already used"):
        service.take(first)
    with pytest.raises(Unauthenticated, match="already used"):  # even re-signed, later
        service.take(signed(body, at=NOW + timedelta(seconds=60)))


def test_a_signature_from_another_key_or_over_another_id_or_time_is_refused(service):
    body = event_body("email.delivered")
    stamp = str(int(NOW.timestamp()))

    with pytest.raises(Unauthenticated):
        service.take(signed(body, svix_signature=signature(SVIX_ID, stamp, body, os.urandom(24))))
    with pytest.raises(Unauthenticated):
        service.take(signed(body, svix_signature=signature("msg_other", stamp, body)))
    with pytest.raises(Unauthenticated):
        service.take(signed(body, svix_timestamp=str(int(NOW.timestamp()) - 1)))


@pytest.mark.parametrize(
    "headers",
    [
        {"svix_signature": None},
        {"svix_signature": ""},
        {"svix_id": None},
        {"svix_timestamp": None},
        {"svix_timestamp": "soon"},
        {"svix_timestamp": "1.9e9"},
        {"svix_timestamp": "9" * 30},
        {"svix_signature": "v1"},  # the library's verify() would raise ValueError here
        {"svix_signature": "v1,%%%not-base64"},
        {"svix_signature": "nonsense"},
        {"svix_id": "msg with spaces"},
    ],
)
def test_missing_or_garbled_svix_headers_are_refused(service, headers):
    with pytest.raises(Unauthenticated):
        service.take(signed(event_body("email.delivered"), **headers))
    assert service.used == set()


@pytest.mark.parametrize("secret", [None, "", "whsec_", "whsec_!!!", "whsec_A", "whsec_ünï"])
def test_a_config_without_a_usable_webhook_secret_verifies_nothing(service, secret):
    service.secrets = {"api_key": "re_x", "webhook_secret": secret}
    if secret is None:
        del service.secrets["webhook_secret"]

    with pytest.raises(Unauthenticated, match="webhook_secret") as refused:
        service.take(signed(event_body("email.delivered")))
    assert "!!!" not in str(refused.value)


def test_a_body_that_is_not_utf8_is_refused(service):
    with pytest.raises(Unauthenticated, match="UTF-8"):
        service.take(signed(b'{"type": "email.delivered\xff"}'))


# Signed but not as documented ------------------------------------------------------------


def mangled(**data) -> bytes:
    payload = json.loads(event_body("email.bounced", bounce=BOUNCE))
    for key, value in data.items():
        if value is None:
            del payload["data"][key]
        else:
            payload["data"][key] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"email.delivered"',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"created_at": "2031-05-04T03:01:59Z", "data": {}}',
        b'{"type": 7}',
        b'{"type": "email.delivered", "created_at": "2031-05-04T03:01:59Z", "data": []}',
        event_body("email.delivered").replace(CREATED_AT.encode(), b"2031-05-04T03:01:59"),
        event_body("email.delivered").replace(CREATED_AT.encode(), b"yesterday"),
        mangled(to=None),
        mangled(to=[]),
        mangled(to="zoe@example.com"),
        mangled(to=["not an address"]),
        mangled(to=[7]),
        mangled(to=[f"r{n}@example.com" for n in range(1001)]),
        mangled(email_id=None),
        mangled(email_id=""),
        mangled(bounce=None),
        mangled(bounce="Permanent"),
        mangled(bounce={"subType": "General"}),
        mangled(tags="email_id=42"),
        mangled(tags=["email_id"]),
        mangled(click=[]),
    ],
)
def test_a_signed_body_not_as_documented_is_malformed(service, body):
    with pytest.raises(Malformed):
        service.take(signed(body))
