"""Build the Django EmailMessage every provider receives from a stored Email."""

from __future__ import annotations

import base64

from django.core.mail import EmailMultiAlternatives

from .models import Email


def build_message(email: Email) -> EmailMultiAlternatives:
    headers = dict(email.headers)
    if email.message_id:
        headers["Message-ID"] = email.message_id
    # Text is the main body when there is one, HTML its alternative; else HTML alone.
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.text or email.html,
        from_email=email.from_email,
        to=email.to,
        cc=email.cc,
        bcc=email.bcc,
        reply_to=email.reply_to,
        headers=headers,
    )
    # Ours, for providers that carry metadata (DESIGN.md: events match the exact email) or take
    # an idempotency key; Django's own backends ignore the attribute, as anymail's do theirs.
    message.metadata = {"email_id": str(email.pk)}
    if not email.text:
        message.content_subtype = "html"
    elif email.html:
        message.attach_alternative(email.html, "text/html")
    for attachment in email.attachments:
        message.attach(
            attachment["filename"],
            base64.b64decode(attachment["content"]),
            attachment["content_type"],
        )
    return message
