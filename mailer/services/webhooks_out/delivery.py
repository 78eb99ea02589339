"""Delivering webhook messages: claim a due one with a lease (exactly one worker holds it; a
dead worker's lease ends and the row is due again), sign it as Standard Webhooks do, POST it over
the pinned HTTP client (the private-address rule at connect time, a deadline, no redirects), and
store the outcome: delivered, the next try on the schedule, or failed. An endpoint failing for
DISABLE_AFTER is disabled, and its account told once. The sweep's part is here too."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from mailer import accountcache
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.providers.base import ProviderError
from mailer.providers.httpclient import HttpClient
from mailer.providers.net import Deadline, sanitize
from mailer.vocabulary import WebhookStatus

from .outbox import messages_enqueue

logger = logging.getLogger("mailer.webhooks")

# Seconds before each try: the first at once, the eighth 10 h after the seventh; then failed.
RETRY_SCHEDULE = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
DELIVERY_DEADLINE = 10.0  # the whole try: resolve, connect, TLS, request, answer
CONNECT_TIMEOUT = 5.0
LEASE_SECONDS = 60.0  # past the deadline with room to store the outcome
DISABLE_AFTER = timedelta(days=5)
SWEEP_BUDGET_SECONDS = 60.0  # an inline sweep starts no delivery after this
USER_AGENT = "emailservice-webhooks/1"


@dataclass(frozen=True)
class TryResult:
    status_code: int | None  # None: no answer (refused, blocked, timed out)
    error: str = ""  # empty: delivered

    @property
    def delivered(self) -> bool:
        return not self.error


def _leasable(now: datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def webhook_message_claim(*, message_id: int) -> WebhookMessage | None:
    """Take a due, pending message for one try, or None: not due, done, or held by another
    worker's lease. One conditional UPDATE of the row: exactly one caller wins."""
    now = timezone.now()
    claimed = WebhookMessage.objects.filter(
        _leasable(now),
        pk=message_id,
        status=WebhookStatus.PENDING,
        next_attempt_at__lte=now,
    ).update(
        claimed_at=now,
        lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
        tries=F("tries") + 1,
    )
    if not claimed:
        return None
    found = WebhookMessage.objects.select_related("endpoint__account").filter(pk=message_id)
    message = found.first()
    if message is None:  # its endpoint was deleted as it was stored
        WebhookMessage.objects.filter(pk=message_id).delete()
        return None
    if not message.endpoint.enabled:  # disabled meanwhile: pause it, as disabling does
        WebhookMessage.objects.filter(pk=message_id, claimed_at=now).update(
            tries=F("tries") - 1, lease_expires_at=None, next_attempt_at=None
        )
        return None
    return message


def webhook_message_process(*, message_id: int) -> str:
    """Claim a message and make one try (the worker's task, and the sweep's in sync mode).
    Returns what became of it."""
    message = webhook_message_claim(message_id=message_id)
    if message is None:
        return "not claimed"
    try:
        result = webhook_post(message)
    except ImproperlyConfigured:  # ENCRYPTION_KEYS can't read the secret: never swallowed
        raise
    except Exception as exc:  # a bug must not leave the message claimed, retried for ever
        logger.exception("webhook %s: the try failed on our side", message.msg_id)
        result = TryResult(None, f"internal error: {type(exc).__name__}")
    return webhook_message_finish(message=message, result=result)


def _signed_headers(message: WebhookMessage, body: str) -> dict[str, str]:
    now = timezone.now()
    signature = Webhook(message.endpoint.signing_secret()).sign(message.msg_id, now, body)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message.msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def webhook_post(message: WebhookMessage) -> TryResult:
    """One signed POST of the message to its endpoint, within DELIVERY_DEADLINE. Any 2xx is
    delivered; a 3xx is not followed; an endpoint's answer body is never kept."""
    body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False)
    parts = urlsplit(message.endpoint.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        client = HttpClient(
            f"{parts.scheme}://{parts.netloc}",
            label="the endpoint",
            timeout=DELIVERY_DEADLINE,
            connect_timeout=CONNECT_TIMEOUT,
            allow_private=settings.ALLOW_PRIVATE_PROVIDER_HOSTS,
            max_idle=0,
        )
        try:
            answer = client.request(
                "POST",
                path,
                body=body.encode(),
                headers=_signed_headers(message, body),
                deadline=Deadline(DELIVERY_DEADLINE),
            )
        finally:
            client.close()
    except ProviderError as exc:
        return TryResult(None, sanitize(exc.message))
    if 200 <= answer.status < 300:
        return TryResult(answer.status)
    if 300 <= answer.status < 400:
        return TryResult(answer.status, f"HTTP {answer.status}: redirects are not followed")
    return TryResult(answer.status, f"HTTP {answer.status}")


def _next_try(message: WebhookMessage, now: datetime) -> datetime | None:
    """When the try after this failed one is due, or None when the schedule is over."""
    if message.tries >= len(RETRY_SCHEDULE):
        return None
    return now + timedelta(seconds=RETRY_SCHEDULE[message.tries])


def webhook_message_finish(*, message: WebhookMessage, result: TryResult) -> str:
    """Store a try's outcome if this worker still holds the message's lease, and what it says
    of the endpoint. Returns the message's status."""
    now = timezone.now()
    fields: dict = {"last_status_code": result.status_code, "last_error": result.error[:300]}
    fields |= {"lease_expires_at": None, "enqueued_at": None}
    if result.delivered:
        fields |= {"status": WebhookStatus.DELIVERED, "delivered_at": now, "next_attempt_at": None}
    else:
        retry_at = _next_try(message, now)
        status = WebhookStatus.PENDING if retry_at else WebhookStatus.FAILED
        fields |= {"status": status, "next_attempt_at": retry_at}
    with transaction.atomic():
        held = WebhookMessage.objects.filter(pk=message.pk, claimed_at=message.claimed_at)
        if not held.update(**fields):
            logger.warning("webhook %s: lease lost before its outcome was stored", message.msg_id)
            return message.status
        for name, value in fields.items():
            setattr(message, name, value)
        endpoints = WebhookEndpoint.objects.filter(pk=message.endpoint_id)
        if result.delivered:
            endpoints.filter(failing_since__isnull=False).update(failing_since=None)
        else:
            endpoints.filter(failing_since__isnull=True).update(failing_since=now)
            _disable_if_failing_too_long(message.endpoint, now)
    if not result.delivered:
        logger.info("webhook %s to endpoint %s: try %s failed: %s", message.msg_id,
                    message.endpoint_id, message.tries, result.error)  # fmt: skip
    return message.status


def _disable_if_failing_too_long(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Disable the endpoint once its deliveries have failed without a success for DISABLE_AFTER.
    The conditional update lets one worker do it, so the account is told once."""
    endpoint.refresh_from_db(fields=["failing_since"])
    if endpoint.failing_since is None or now - endpoint.failing_since < DISABLE_AFTER:
        return
    since = f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
    reason = f"Disabled on {now:%Y-%m-%d %H:%M} UTC: every delivery failed since {since}."
    disabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_reason=reason, updated_at=now
    )
    if not disabled:
        return
    accountcache.changed(endpoint.account_id, accountcache.CONFIG)  # an update: no signals
    WebhookMessage.objects.filter(endpoint=endpoint, status=WebhookStatus.PENDING).update(
        next_attempt_at=None, enqueued_at=None
    )  # paused until it is enabled again
    logger.warning("webhook endpoint %s disabled: %s", endpoint.pk, reason)
    endpoint.enabled, endpoint.disabled_reason = False, reason
    transaction.on_commit(lambda: _tell_account(endpoint))


def _tell_account(endpoint: WebhookEndpoint) -> None:
    """One message through the site's failover mailer; a failure is logged."""
    to = endpoint.account.email
    if not to:
        logger.warning("webhook endpoint %s disabled; no address to tell", endpoint.pk)
        return
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    body = (
        f"Your webhook endpoint {endpoint.url} was disabled.\n\n{endpoint.disabled_reason}\n\n"
        "It receives no events until you enable it again, on the webhooks page "
        f"({base}/webhooks/) or with PATCH /api/v1/webhooks/{endpoint.pk} "
        '{"enabled": true}. Its messages still pending are sent then.\n'
    )
    try:
        send_mail("Webhook endpoint disabled", body, None, [to])
    except Exception:
        logger.exception("webhook endpoint %s disabled; telling %s failed", endpoint.pk, to)


# The sweep ---------------------------------------------------------------------------------


def _due(now: datetime, limit: int, *, queued: bool) -> list[tuple[int, int]]:
    """(message, endpoint) of pending messages that are due and held by no lease; in queue mode
    only those on no live broker message (never enqueued, or so long ago it was lost)."""
    due = WebhookMessage.objects.filter(
        _leasable(now), status=WebhookStatus.PENDING, next_attempt_at__lte=now
    )
    if queued:
        stale = now - timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
        due = due.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
    return list(due.order_by("next_attempt_at").values_list("pk", "endpoint_id")[:limit])


def webhooks_sweep(*, inline: bool, limit: int = 1000) -> int:
    """The sweep's part: send the due messages here, one try each (`inline`, sync mode), or put
    them on the broker (queue mode). Inline, an endpoint that failed once in this pass is not
    tried again in it, and no try starts after SWEEP_BUDGET_SECONDS: the rest wait for the next
    pass. Returns how many were tried or enqueued."""
    due = _due(timezone.now(), limit, queued=not inline)
    if not inline:
        return messages_enqueue(message_ids=[pk for pk, _ in due], at_once=True)
    budget, failing, tried = Deadline(SWEEP_BUDGET_SECONDS), set(), 0
    for message_id, endpoint_id in due:
        if budget.expired:
            break
        if endpoint_id in failing:
            continue
        outcome = webhook_message_process(message_id=message_id)
        tried += outcome != "not claimed"
        if outcome == WebhookStatus.PENDING or outcome == WebhookStatus.FAILED:
            failing.add(endpoint_id)
    return tried
