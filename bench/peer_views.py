"""The sync-send peer (item 1): what a bare Django app does to send an email in a request.

`POST /bench/peer/send_mail` takes the API's JSON body (from, to, subject, text, html) and calls
`django.core.mail.send_mail` with the text and the HTML as its alternative, through the
"bench-peer" mailer (Django's SMTP backend pointed at the sink, bench/settings.py), and answers
200. It authenticates nothing, validates nothing, stores nothing and records nothing: the floor
of "a Django app sending mail", against which the API's sync send is compared.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.mail import send_mail
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt  # an API-style POST without a session, as the load generator sends it
@require_POST
def send_mail_view(request):
    """Send the posted email with send_mail (a new SMTP connection per call, as Django does)."""
    body = json.loads(request.body)
    recipients = body["to"] if isinstance(body["to"], list) else [body["to"]]
    sent = send_mail(
        body["subject"],
        body["text"],
        body["from"],
        recipients,
        html_message=body.get("html"),
        using=settings.PEER_MAILER,
    )
    return JsonResponse({"sent": sent})
