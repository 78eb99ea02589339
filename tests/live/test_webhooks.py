"""Webhooks in under real concurrency: gunicorn with 4 workers takes 1,000 provider events
posted at once from 16 clients, some posted twice; each is stored exactly once, none is lost,
and every email's delivery state comes out right whatever order they landed in."""

from __future__ import annotations

import base64
import json
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from harness.smtp import SmtpServer
from tests.appserver import create_account, start_app_server

USER, PASSWORD = "hooks", "s3cret-" + uuid.uuid4().hex
EMAILS, RECIPIENTS = 20, 50  # 1,000 recipients: one event each


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    sink = SmtpServer().start()
    server = start_app_server(tmp_path_factory.mktemp("hooks"), workers=4)
    server.tokens["eve"] = create_account(server, "eve", smtp_port=sink.port)
    secrets = {"server_token": "pm", "webhook_username": USER, "webhook_password": PASSWORD}
    provider = server.factory(
        "provider", "eve", "postmark", "--name", "mark",
        "--settings", json.dumps({"api_url": "http://127.0.0.1:9"}),
        "--secrets", json.dumps(secrets),
    )  # fmt: skip
    [row] = server.factory("rows", "mailer.ProviderConfig", f"pk={provider['id']}",
                           "--fields", "webhook_token")  # fmt: skip
    server.hook = f"/webhooks/in/{row['webhook_token']}/"
    yield server
    server.stop()
    sink.stop()


def delivery(email_id: int, recipient: str, at: datetime) -> dict:
    return {
        "RecordType": "Delivery", "ServerID": 1, "MessageStream": "outbound",
        "MessageID": str(uuid.uuid4()), "Recipient": recipient, "Tag": "",
        "DeliveredAt": at.isoformat(), "Details": "smtp;250 2.0.0 OK",
        "Metadata": {"email_id": str(email_id)},
    }  # fmt: skip


def bounce(email_id: int, recipient: str, at: datetime, number: int) -> dict:
    return {
        "RecordType": "Bounce", "ID": number, "Type": "HardBounce", "TypeCode": 1,
        "MessageStream": "outbound", "MessageID": str(uuid.uuid4()), "ServerID": 1,
        "Name": "Hard bounce", "Tag": "", "Description": "Unknown user", "Details": "550 5.1.1",
        "Email": recipient, "From": "shop@example.com", "BouncedAt": at.isoformat(),
        "Inactive": True, "CanActivate": True, "Subject": "Order",
        "Metadata": {"email_id": str(email_id)},
    }  # fmt: skip


def test_a_thousand_concurrent_events_are_each_stored_once_and_states_are_right(live):
    api = live.api(live.tokens["eve"])
    emails = []
    for n in range(EMAILS):
        to = [f"r{n}-{i}@example.org" for i in range(RECIPIENTS)]
        sent = api.post("/api/v1/emails", {"from": "shop@example.com", "to": to,
                                           "subject": f"Order {n}", "text": "Thanks."})  # fmt: skip
        assert sent.status_code == 201, sent
        emails.append((sent.json()["id"], to))
    # Even emails: every recipient delivered. Odd ones: the first recipient bounces.
    at = datetime.now(UTC) - timedelta(minutes=1)
    records = []
    for n, (email_id, to) in enumerate(emails):
        for i, recipient in enumerate(to):
            if n % 2 and i == 0:
                records.append(bounce(email_id, recipient, at, 10_000 + n))
            else:
                records.append(delivery(email_id, recipient, at + timedelta(seconds=i)))
    posts = records + random.Random(7).sample(records, 150)  # providers retry: duplicates
    random.Random(8).shuffle(posts)
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    hooks = live.api()

    def post(record: dict) -> int:
        answer = hooks.post(live.hook, record, headers={"Authorization": auth})
        return answer.status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, posts))
    assert statuses.count(200) == len(posts), sorted(set(statuses))

    stored = live.factory("rows", "mailer.DeliveryEvent", "provider__name=mark",
                          "--fields", "email,recipient,type")  # fmt: skip
    assert len(stored) == len(records) == EMAILS * RECIPIENTS
    assert {(r["email"], r["recipient"]) for r in stored} == {
        (email_id, r) for email_id, to in emails for r in to
    }
    for n, (email_id, to) in enumerate(emails):
        email = api.get(f"/api/v1/emails/{email_id}").json()
        expected = "partially_delivered" if n % 2 else "delivered"
        assert email["delivery"] == expected, (n, email["delivery"])
        states = {r: s["state"] for r, s in email["recipient_states"].items()}
        assert len(states) == RECIPIENTS
        assert states[to[0]] == ("bounced" if n % 2 else "delivered")
    suppressed = live.factory("rows", "mailer.Suppression", "account__username=eve",
                              "--fields", "address")  # fmt: skip
    assert sorted(r["address"] for r in suppressed) == sorted(
        to[0] for n, (_, to) in enumerate(emails) if n % 2
    )
