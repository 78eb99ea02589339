"""Database and cache reachability, for /healthz (liveness) and /readyz (readiness)."""

from __future__ import annotations

import logging

from django.db import connection

from mailer import cacheguard

logger = logging.getLogger("mailer.selectors")


def system_health() -> dict[str, str]:
    """{"database": ..., "cache": ...}, each "ok" or "error: why". Never raises: this is what a
    load balancer polls. The cache check answers from memory during a known outage
    (mailer.cacheguard), so polling it costs a hung Redis nothing and logs nothing new."""
    health = {"database": "ok", "cache": cacheguard.check()}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        logger.error("health: database unreachable: %s", exc)
        health["database"] = f"error: {type(exc).__name__}"
    return health
