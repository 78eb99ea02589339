"""SES's events through SNS, end to end: the subscription confirmed, the signing certificate
fetched over real (local) HTTPS through the pinned client, a signed bounce Notification
suppressing the address, and the next email to it contacting no provider, SendGrid first."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from harness.api import ApiClient
from harness.factories import make_token
from harness.smtp import make_self_signed_cert
from mailer.models import DeliveryEvent, Email, Suppression
from mailer.providers.ses import events as ses_events
from tests.fakes import sendgrid
from tests.fakes.ses import DUMMY_KEYS, REGION

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


class SnsHost(ThreadingHTTPServer):
    """What SNS serves over HTTPS: its signing certificate and the subscription link."""

    def __init__(self, tls: ssl.SSLContext, certificate: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.certificate = certificate
        self.paths: list[str] = []

    @property
    def base(self) -> str:
        return f"https://localhost:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/cert.pem":
            body = self.server.certificate
        elif self.path.startswith("/?Action=ConfirmSubscription"):
            body = b"<ConfirmSubscriptionResponse/>"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def sns_host(tmp_path, signing_key, settings, monkeypatch) -> Iterator[SnsHost]:
    cert_path, key_path = make_self_signed_cert(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the client trusts this host's TLS cert
    settings.SNS_HOST_PATTERN = r"^localhost$"
    ses_events.forget_certificates()
    host = SnsHost(tls, _signing_certificate(signing_key))
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield host
    host.shutdown()
    host.server_close()
    ses_events.forget_certificates()


def _signing_certificate(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def sns_message(host: SnsHost, key, kind: str, **fields) -> bytes:
    """An SNS HTTPS delivery, signed (version 2) over AWS's documented string to sign."""
    body = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": "2",
        "SigningCertURL": f"{host.base}/cert.pem",
        **fields,
    }
    keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    if kind != "Notification":
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    signed = "".join(f"{k}\n{body[k]}\n" for k in keys if k in body).encode()
    signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    body["Signature"] = base64.b64encode(signature).decode()
    return json.dumps(body).encode()


def post(client, config, body: bytes, kind: str):
    return client.post(
        f"/webhooks/in/{config.webhook_token}/",
        body,
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": kind},
    )


def test_sns_subscription_then_a_bounce_suppresses_across_providers(
    client, account, add_provider, ses, sendgrid_server, sns_host, signing_key
):
    ses.verify("example.com")
    add_provider("sendgrid", name="grid", priority=1, settings={"host": sendgrid_server.url},
                 secrets={"api_key": sendgrid.VALID_KEY})  # fmt: skip
    aws = add_provider("ses", name="aws", priority=2,
                       settings={"region": REGION, "endpoint_url": ses.endpoint_url,
                                 "topic_arn": TOPIC},
                       secrets=DUMMY_KEYS)  # fmt: skip
    api = ApiClient.django(client, make_token(account))

    confirm = f"{sns_host.base}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t0k"
    subscription = sns_message(sns_host, signing_key, "SubscriptionConfirmation",
                               Message="You have chosen to subscribe", SubscribeURL=confirm,
                               Token="t0k")  # fmt: skip
    answer = post(client, aws, subscription, "SubscriptionConfirmation")
    assert answer.status_code == 200, answer.content
    assert sns_host.paths == ["/cert.pem", confirm.removeprefix(sns_host.base)]

    order = {"from": "shop@example.com", "to": "ann@example.org", "subject": "Order",
             "text": "Thanks.", "provider": "aws"}  # fmt: skip
    first = api.post("/api/v1/emails", order)
    assert first.json()["sent_via"]["name"] == "aws", first.content
    ses_message_id = first.json()["provider_message_id"]
    bounce = {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "ann@example.org", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": datetime.now(UTC).isoformat(),
        },
        "mail": {
            "messageId": ses_message_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "destination": ["ann@example.org"],
            "tags": {"email_id": [str(first.json()["id"])]},
        },
    }  # fmt: skip
    notification = sns_message(sns_host, signing_key, "Notification", Message=json.dumps(bounce))
    answer = post(client, aws, notification, "Notification")
    assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.content
    assert sns_host.paths.count("/cert.pem") == 1, "the certificate is fetched once, then cached"
    [event] = DeliveryEvent.objects.all()
    assert (event.email_id, event.type, event.bounce_type) == (
        first.json()["id"],
        "bounced",
        "hard",
    )
    assert Email.objects.get(pk=first.json()["id"]).delivery == "bounced"
    assert Suppression.objects.get(account=account).source == "ses 'aws'"

    second = api.post("/api/v1/emails", {"from": "shop@example.com", "to": "ann@example.org",
                                         "subject": "Again", "text": "Hi."})  # fmt: skip
    assert second.status_code == 422
    assert second.json()["suppressed"] == ["ann@example.org"]
    assert sendgrid_server.requests == [], "SendGrid, first in line, was never contacted"
    assert len(ses.sent()) == 1


def test_a_notification_signed_by_another_key_or_topic_stores_nothing(
    client, add_provider, sns_host, signing_key
):
    aws = add_provider("ses", name="aws", settings={"region": REGION, "topic_arn": TOPIC},
                       secrets=DUMMY_KEYS)  # fmt: skip
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    record = json.dumps({"eventType": "Delivery", "mail": {"messageId": "m", "destination": []},
                         "delivery": {"recipients": ["a@example.org"]}})  # fmt: skip
    forged = sns_message(sns_host, stranger, "Notification", Message=record)
    assert post(client, aws, forged, "Notification").status_code == 401
    other_topic = sns_message(sns_host, signing_key, "Notification", Message=record,
                              TopicArn="arn:aws:sns:us-east-1:999999999999:theirs")  # fmt: skip
    assert post(client, aws, other_topic, "Notification").status_code == 401
    assert not DeliveryEvent.objects.exists()


def test_a_certificate_host_that_stalls_is_a_bounded_503_and_stores_nothing(
    client, add_provider, sns_host, signing_key, settings, monkeypatch
):
    """The signing certificate's host takes the connection and never speaks (TLS never starts):
    the fetch is cut at its deadline, SNS is told to retry (503), nothing is stored."""
    from harness.smtp import Blackhole
    from mailer.services import events as event_service

    monkeypatch.setattr(event_service, "FETCH_TIMEOUT", 1.0)
    hole = Blackhole().start()
    try:
        aws = add_provider("ses", name="aws", settings={"region": REGION}, secrets=DUMMY_KEYS)
        record = json.dumps({"eventType": "Delivery", "mail": {"messageId": "m", "destination": []},
                             "delivery": {"recipients": ["a@example.org"]}})  # fmt: skip
        body = sns_message(sns_host, signing_key, "Notification", Message=record)
        body = body.replace(sns_host.base.encode(), f"https://localhost:{hole.port}".encode())
        started = time.monotonic()
        answer = post(client, aws, body, "Notification")
        assert answer.status_code == 503 and time.monotonic() - started < 10
        assert not DeliveryEvent.objects.exists()
    finally:
        hole.stop()
