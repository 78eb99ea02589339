"""Database and cache reachability, for /healthz."""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import connection

logger = logging.getLogger("mailer.selectors")


def system_health() -> dict:
    """Database and cache reachability, for /healthz."""
    health = {"database": "ok", "cache": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # report, don't raise: this is what a load balancer polls
        logger.error("health: database unreachable: %s", exc)
        health["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("healthz", "1", timeout=10)
        if cache.get("healthz") != "1":
            health["cache"] = "error: value not read back"
    except Exception as exc:
        logger.error("health: cache unreachable: %s", exc)
        health["cache"] = f"error: {type(exc).__name__}"
    return health
