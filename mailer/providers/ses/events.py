"""Amazon SES delivery events, as Amazon SNS posts them to an HTTP(S) subscription.

Followed (AWS documentation, docs.aws.amazon.com):
  - SNS JSON formats and signatures: sns/latest/dg/sns-message-and-json-formats.html,
    sns-verify-signature-of-message.html and ...-verify-message-signature.html: the string to
    sign is "Key\\nvalue\\n" for Message, MessageId, Subject (if present), Timestamp, TopicArn, Type
    (Notification), or Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type
    (confirmations); SignatureVersion "1" is SHA1withRSA, "2" SHA256withRSA (PKCS#1 v1.5),
    checked against the certificate at SigningCertURL, which must be https on an SNS host.
  - SES records inside Message: ses/latest/dg/event-publishing-retrieving-sns-contents.html
    (event publishing, "eventType") and ses/latest/dg/notification-contents.html (feedback,
    "notificationType"): the same objects (mail, bounce, complaint, delivery, ...).

What this checks: the signature, the certificate URL's scheme, host (settings.SNS_HOST_PATTERN)
and .pem path before anything is fetched, the certificate's validity dates, the signed Timestamp
(MAX_AGE), the MessageId against replays, x-amz-sns-message-type against the signed Type, and the
TopicArn against the config's "topic_arn" setting. Without that setting ANY topic is accepted:
anyone with an AWS account can get SNS to sign a message of their own topic, and only the webhook
URL's unguessable path keeps other topics out (the provider page says to set it). The
certificate's chain is not checked: its trust is the HTTPS fetch from an SNS host. Raw message
delivery (no SNS envelope) is unsigned, hence refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings as django_settings

from ..events import (
    MAX_DETAIL,
    MAX_EVENTS,
    BounceType,
    Event,
    Events,
    EventType,
    Handshake,
    Malformed,
    Unauthenticated,
    WebhookRequest,
)

TOPIC_SETTING = "topic_arn"  # optional in the spec: without it, any topic is accepted

NOTIFICATION = "Notification"
CONFIRMATIONS = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    **dict.fromkeys(CONFIRMATIONS, _CONFIRMATION_FIELDS),
}
_OPTIONAL_FIELDS = {"Subject"}
# SHA1 only because SNS signs with it (version 1); version 2 is SHA256.
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

# Parsed signing certificates by URL: SNS signs everything of a region with a few certificates,
# so fetching each once is enough; bounded, oldest out first.
CERT_CACHE_SIZE = 50
_certificates: dict[str, x509.Certificate] = {}
_certificates_lock = threading.Lock()


def _json_object(data: str | bytes, error: type[Exception], what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"ses: {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise error(f"ses: {what} is not a JSON object")
    return value


def _timestamp(value: Any, error: type[Exception], what: str) -> datetime:
    """An ISO 8601 time with its zone ("2024-05-01T12:00:00.000Z"), in UTC."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise error(f"ses: {what} is not an ISO 8601 time with a zone")
    return at.astimezone(UTC)


def sns_url(url: Any, what: str) -> str:
    """`url` when it is https on a host matching settings.SNS_HOST_PATTERN; else Unauthenticated.
    Nothing is ever fetched from anywhere else: the certificate decides what we believe."""
    parts = urlsplit(url) if isinstance(url, str) else None
    try:
        host = parts.hostname if parts else None
    except ValueError:  # a malformed port or bracketed host
        host = None
    pattern = django_settings.SNS_HOST_PATTERN
    if (
        parts is None
        or parts.scheme != "https"
        or not host
        or parts.username is not None
        or not re.fullmatch(pattern, host)
    ):
        raise Unauthenticated(f"ses: the {what} is not https on an Amazon SNS host")
    return url


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed, in its documented order; Unauthenticated if a field is missing."""
    lines = []
    for key in _SIGNED_FIELDS[envelope["Type"]]:
        value = envelope.get(key)
        if value is None and key in _OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise Unauthenticated(f"ses: the SNS message has no {key}")
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode()


def _cached_certificate(url: str) -> x509.Certificate | None:
    with _certificates_lock:
        return _certificates.get(url)


def _remember_certificate(url: str, certificate: x509.Certificate) -> None:
    with _certificates_lock:
        _certificates[url] = certificate
        while len(_certificates) > CERT_CACHE_SIZE:
            del _certificates[next(iter(_certificates))]


def forget_certificates() -> None:
    """Empty the certificate cache (tests, or after AWS rotates a certificate early)."""
    with _certificates_lock:
        _certificates.clear()


class SesEvents(Events):
    """SNS-delivered SES events: verify() the SNS signature, handshake() the subscription,
    parse() the SES record inside a Notification."""

    kind = "ses"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verified: tuple[bytes, dict[str, Any]] | None = None

    def verify(self, request: WebhookRequest) -> None:
        envelope = _json_object(request.body, Unauthenticated, "the body")
        kind = envelope.get("Type")
        if kind not in _SIGNED_FIELDS:
            raise Unauthenticated("ses: not an SNS message (no known Type)")
        if request.headers.get("x-amz-sns-message-type") != kind:
            raise Unauthenticated("ses: x-amz-sns-message-type does not match the message's Type")
        hash_class = _HASHES.get(envelope.get("SignatureVersion"))
        if hash_class is None:
            raise Unauthenticated("ses: unknown or missing SNS SignatureVersion")
        cert_url = sns_url(envelope.get("SigningCertURL"), "SigningCertURL")
        if not urlsplit(cert_url).path.endswith(".pem"):
            raise Unauthenticated("ses: the SigningCertURL is not a .pem certificate")
        self.check_fresh(_timestamp(envelope.get("Timestamp"), Unauthenticated, "Timestamp"))
        signature = self._signature(envelope)
        data = string_to_sign(envelope)
        public_key = self._public_key(cert_url)
        try:
            public_key.verify(signature, data, padding.PKCS1v15(), hash_class())
        except InvalidSignature as exc:
            raise Unauthenticated("ses: the SNS signature does not match") from exc
        self._check_topic(envelope["TopicArn"])
        self.check_not_replayed(envelope["MessageId"])
        self._verified = (request.body, envelope)

    @staticmethod
    def _signature(envelope: Mapping[str, Any]) -> bytes:
        try:
            signature = base64.b64decode(envelope.get("Signature") or "", validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise Unauthenticated("ses: the SNS Signature is not base64") from exc
        if not signature:
            raise Unauthenticated("ses: the SNS message is not signed")
        return signature

    def _public_key(self, url: str) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at `url` (fetched once per URL), valid now."""
        certificate = _cached_certificate(url)
        if certificate is None:
            if self.fetch is None:
                raise Unauthenticated("ses: no way to fetch SNS's signing certificate")
            # A fetch that fails (ProviderError) goes up as it is: our trouble, not a forgery,
            # and SNS retries what we don't take.
            try:
                certificate = x509.load_pem_x509_certificate(self.fetch(url))
            except ValueError as exc:
                raise Unauthenticated("ses: the SigningCertURL is not a PEM certificate") from exc
            _remember_certificate(url, certificate)
        now = self.now()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise Unauthenticated("ses: SNS's signing certificate is not valid now")
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise Unauthenticated("ses: SNS's signing certificate holds no RSA key")
        return public_key

    def _check_topic(self, topic_arn: str) -> None:
        expected = str(self.settings.get(TOPIC_SETTING) or "")
        if expected and topic_arn != expected:
            raise Unauthenticated("ses: the message comes from another SNS topic")

    def handshake(self, request: WebhookRequest) -> Handshake | None:
        """Confirm a subscription SNS asks us to (GET its SubscribeURL); acknowledge an
        unsubscription. Only for the request verify() took: never fetch an unsigned URL."""
        if self._verified is None or self._verified[0] != request.body:
            raise Unauthenticated("ses: handshake on a request that was not verified")
        envelope = self._verified[1]
        if envelope["Type"] == "UnsubscribeConfirmation":
            return Handshake(200, "ok")
        if envelope["Type"] != "SubscriptionConfirmation":
            return None
        subscribe_url = sns_url(envelope.get("SubscribeURL"), "SubscribeURL")
        if self.fetch is None:
            raise Unauthenticated("ses: no way to confirm the SNS subscription")
        self.fetch(subscribe_url)
        return Handshake(200, "subscription confirmed")

    def parse(self, request: WebhookRequest) -> list[Event]:
        envelope = _json_object(request.body, Malformed, "the body")
        kind = envelope.get("Type")
        if kind in CONFIRMATIONS:
            return []
        if kind != NOTIFICATION:
            raise Malformed("ses: not an SNS Notification")
        sns_id, message = envelope.get("MessageId"), envelope.get("Message")
        if not isinstance(sns_id, str) or not sns_id or not isinstance(message, str):
            raise Malformed("ses: the SNS Notification has no MessageId or Message")
        published = _timestamp(envelope.get("Timestamp"), Malformed, "Timestamp")
        return _events(_json_object(message, Malformed, "the SES record"), sns_id, published)


# The SES record -> Events ----------------------------------------------------------------------

# eventType (event publishing) or notificationType (feedback notifications) -> its section's key,
# our type, and where its recipients are (None: mail.destination, for records that name none:
# SES sends one record per open or click, so for a message to several we can't tell who).
# Send, Rendering Failure and AmazonSnsSubscriptionSucceeded (SES testing a feedback topic) and
# types SES may add later mean nothing to us: skipped.
_KINDS: dict[str, tuple[str, EventType, str | None]] = {
    "Bounce": ("bounce", EventType.BOUNCED, "bouncedRecipients"),
    "Complaint": ("complaint", EventType.COMPLAINED, "complainedRecipients"),
    "Delivery": ("delivery", EventType.DELIVERED, "recipients"),
    "DeliveryDelay": ("deliveryDelay", EventType.DEFERRED, "delayedRecipients"),
    "Reject": ("reject", EventType.DROPPED, None),
    "Open": ("open", EventType.OPENED, None),
    "Click": ("click", EventType.CLICKED, None),
    "Subscription": ("subscription", EventType.UNSUBSCRIBED, None),
}
# What goes into Event.detail: the section's fields, then each recipient's (SES's name -> ours).
# Opens' and clicks' IP address and user agent are the reader's, not the delivery's: left out.
_SECTION_DETAIL = {
    "bounceType": "bounce_type",
    "bounceSubType": "bounce_subtype",
    "complaintFeedbackType": "feedback_type",
    "complaintSubType": "complaint_subtype",
    "smtpResponse": "smtp_response",
    "delayType": "delay_type",
    "reason": "reason",
    "link": "url",
    "contactList": "contact_list",
    "source": "source",
}
_RECIPIENT_DETAIL = {"status": "code", "diagnosticCode": "diagnostic"}


def _detail(name: str, *parts: tuple[Mapping[str, Any], Mapping[str, str]]) -> dict[str, str]:
    """The provider's event name and what it said, strings only, each cut to MAX_DETAIL."""
    detail = {"event": name[:MAX_DETAIL]}
    for source, names in parts:
        for theirs, ours in names.items():
            value = source.get(theirs)
            if isinstance(value, str) and value:
                detail[ours] = value[:MAX_DETAIL]
    return detail


def _recipients(items: Any, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """[(address, the recipient's object)] from a list of addresses or of objects with one."""
    if not isinstance(items, list) or not items:
        raise Malformed(f"ses: {key} is not a list of recipients")
    if len(items) > MAX_EVENTS:
        raise Malformed(f"ses: more than {MAX_EVENTS} recipients in one record")
    recipients = []
    for item in items:
        fields = item if isinstance(item, dict) else {}
        address = item.get("emailAddress") if isinstance(item, dict) else item
        if not isinstance(address, str) or not address.strip():
            raise Malformed(f"ses: an item of {key} is not a recipient")
        recipients.append((address.strip(), fields))
    return recipients


def _unsubscribes(section: Mapping[str, Any]) -> dict[str, str] | None:
    """A Subscription record's detail when it opts out (of all, or of topics); None when it
    only opts in, which is no event for us."""
    new = section.get("newTopicPreferences")
    if not isinstance(new, dict):
        raise Malformed("ses: a Subscription record without newTopicPreferences")
    topics = new.get("topicSubscriptionStatus")
    opted_out = [
        str(topic.get("topicName") or "")
        for topic in (topics if isinstance(topics, list) else [])
        if isinstance(topic, dict) and topic.get("subscriptionStatus") == "OptOut"
    ]
    if new.get("unsubscribeAll") is not True and not opted_out:
        return None
    everything = "true" if new.get("unsubscribeAll") is True else "false"
    return {"unsubscribe_all": everything, "topics": ",".join(opted_out)[:MAX_DETAIL]}


def _email_id(mail: Mapping[str, Any]) -> str:
    """Ours, from the "email_id" message tag our transport set (event publishing echoes tags;
    feedback notifications don't, and then the message id matches instead)."""
    tags = mail.get("tags")
    if tags is None:
        return ""
    if not isinstance(tags, dict):
        raise Malformed("ses: mail.tags is not an object")
    values = tags.get("email_id")
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0][:255]
    return ""


def _events(record: dict[str, Any], sns_id: str, published: datetime) -> list[Event]:
    name = record.get("eventType", record.get("notificationType"))
    if not isinstance(name, str):
        raise Malformed("ses: the record has no eventType or notificationType")
    if name not in _KINDS:
        return []
    section_key, event_type, recipients_key = _KINDS[name]
    mail, section = record.get("mail"), record.get(section_key)
    if not isinstance(mail, dict) or not isinstance(section, dict):
        raise Malformed(f"ses: a {name} record without its mail or {section_key} object")
    # mail.messageId is SES's MessageId: what SendEmail answered, which our transport stored.
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise Malformed("ses: the record has no mail.messageId")
    extra = _unsubscribes(section) if event_type is EventType.UNSUBSCRIBED else {}
    if extra is None:
        return []
    items = section.get(recipients_key) if recipients_key else mail.get("destination")
    recipients = _recipients(items, recipients_key or "mail.destination")
    stamp = section.get("timestamp") or mail.get("timestamp")
    at = _timestamp(stamp, Malformed, f"{name} timestamp") if stamp else published
    bounce_type = None
    if event_type is EventType.BOUNCED:  # Transient, Undetermined (or a new kind): soft
        hard = section.get("bounceType") == "Permanent"
        bounce_type = BounceType.HARD if hard else BounceType.SOFT
    email_id, events = _email_id(mail), {}
    for recipient, fields in recipients:
        detail = _detail(name, (section, _SECTION_DETAIL), (fields, _RECIPIENT_DETAIL))
        # One SNS message is one SES record and SNS retries keep its MessageId; a recipient
        # SES lists twice is one event.
        events.setdefault(
            recipient,
            Event(
                type=event_type,
                recipient=recipient,
                occurred_at=at,
                provider_event_id=f"{sns_id}:{recipient}",
                provider_message_id=message_id,
                email_id=email_id,
                bounce_type=bounce_type,
                detail={**detail, **extra},
            ),
        )
    return list(events.values())
