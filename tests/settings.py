"""Test settings: production settings with test-only keys, private provider hosts allowed,
and a real Redis (REDIS_URL, set by `make test` through bin/with-redis)."""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 20)
# A fixed Fernet key for tests only.
os.environ.setdefault("ENCRYPTION_KEYS", "8Yq3mYQJ7p0n1f5N8h6mQ2oQyXw0lQ0hJ3b6o2xk1nE=")
os.environ.setdefault("ALLOW_PRIVATE_PROVIDER_HOSTS", "true")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("PROVIDER_TIMEOUT", "2")
os.environ.setdefault("PROVIDER_CONNECT_TIMEOUT", "1")
os.environ.setdefault("MAIL_PROVIDER_URLS", "smtp://127.0.0.1:9?security=none")
# Processes a test starts inherit this, so they share the circuit state with the test.
os.environ.setdefault("CACHE_KEY_PREFIX", f"test-{os.getpid()}")
if not os.environ.get("REDIS_URL"):
    raise ImproperlyConfigured(
        "tests need a real Redis: run `make test`, or `bin/with-redis .venv/bin/pytest`"
    )

from emailservice.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Serve static files from the finders, as in development: tests don't run collectstatic.
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
