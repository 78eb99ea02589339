"""Celery tasks of queue mode. They only call services: the row in the database says what to do,
a message only says which email to look at."""

from __future__ import annotations

from celery import shared_task

from mailer import services
from mailer.services.queue import emails_process


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_email(email_id: int) -> str:
    """One try of one email, if it is still there to take (see services.email_process)."""
    return services.email_process(email_id=email_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_emails(email_ids: list[int]) -> dict:
    """One try of each email of a chunk the sweep published, in turn (see
    mailer.services.queue.emails_process); its message carries time limits sized for the chunk."""
    return emails_process(email_ids=email_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_webhook(message_id: int) -> str:
    """One try of one webhook message, if it is still there to take (see
    services.webhook_message_process)."""
    return services.webhook_message_process(message_id=message_id)


@shared_task(ignore_result=True)
def sweep_outbox() -> dict:
    """Beat runs this every SWEEP_INTERVAL_SECONDS: what a lost message or a dead worker left."""
    return services.emails_sweep().__dict__
