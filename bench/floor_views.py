"""Item 1's durable floor: `POST /bench/floor/send`, the least a sync send that keeps every
email, attempt and outcome must do, with none of the service around it.

It takes the API's JSON body (from, to, subject, text, html) and, for the `floor` account:
stores the Email `sending` (one INSERT, autocommit), sends it on the process's kept SMTP
connection to the sink, and in one transaction stores its DeliveryAttempt and marks it `sent`
(bench/floor.py); it answers 201 with the email's id. It authenticates nothing, asks Redis
nothing, validates nothing but the JSON, and has no failover, circuit breaker, pacing,
suppression check, idempotency, webhooks, metrics or list cache.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench import floor


@csrf_exempt  # an API-style POST without a session, as the load generator sends it
@require_POST
def floor_send_view(request):
    """Store, send on the kept connection, store the attempt and the outcome; 201."""
    payload = json.loads(request.body)
    row = floor.new_row(payload, **floor.claimed_state(settings.SYNC_SENDING_LEASE_SECONDS))
    row.save(force_insert=True)
    floor.deliver(row)
    return JsonResponse({"id": row.pk}, status=201)
