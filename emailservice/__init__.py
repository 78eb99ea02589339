"""emailservice: an email delivery service with automatic failover between providers."""

# Loaded with Django so that @shared_task uses this app (Celery's recommended layout).
from .celery import app as celery_app

__all__ = ("celery_app",)
