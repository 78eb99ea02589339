"""All settings, read from the environment (and `.env` when present). See README: Configuration."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP
from dotenv import load_dotenv

from emailservice.env import env_bool, env_float, env_int, env_list, env_networks, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
load_dotenv(ENV_FILE, override=False)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY is not set: put it in the environment or in .env")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # serves Swagger UI from its own static files, no CDN
    "bootstrap",  # django-bootstrap-static: Bootstrap 5 from our own static files
    "mailer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "mailer.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Cache-Control: no-store on every answer to a signed-in or API-authenticated request.
    "mailer.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "emailservice.urls"
WSGI_APPLICATION = "emailservice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# Database: SQLite (WAL) by default, anything dj-database-url understands through DATABASE_URL.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600), conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # Kept open between requests and tasks, as PostgreSQL's are: opening one (and its
            # PRAGMAs) was a fifth of a cached list request. Checked before reuse.
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set (shared by every process), else local memory.
# Nothing in it is the source of truth (README: Caching and health), so a hung Redis must cost
# little: each call gives up after these timeouts, and mailer.cacheguard then skips the cache
# without waiting, trying it again once per CACHE_RETRY_SECONDS per process. Deliberately no
# IGNORE_EXCEPTIONS: it is global and turns a failed add/incr into answers callers can't tell
# from real ones (the breaker must fail open; claims and idempotency never use the cache).
CACHE_CONNECT_TIMEOUT = env_float("CACHE_CONNECT_TIMEOUT", 0.25)
CACHE_TIMEOUT = env_float("CACHE_TIMEOUT", 0.5)
CACHE_RETRY_SECONDS = env_float("CACHE_RETRY_SECONDS", 2.0)
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": CACHE_CONNECT_TIMEOUT,
                "SOCKET_TIMEOUT": CACHE_TIMEOUT,
            },
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "emailservice"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# In development (make run) static files come straight from the finders; production runs
# collectstatic and serves the compressed, hashed copies.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Delivery.
DELIVERY_MODE = env_str("DELIVERY_MODE", "sync").strip().lower()
if DELIVERY_MODE not in ("sync", "queue"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"DELIVERY_MODE must be sync or queue, not {DELIVERY_MODE!r}")
PROVIDER_TIMEOUT = env_float("PROVIDER_TIMEOUT", 10.0)
PROVIDER_CONNECT_TIMEOUT = env_float("PROVIDER_CONNECT_TIMEOUT", 5.0)
# Deadlines (README: Deadlines). A socket timeout bounds one read; these bound the whole thing.
# One attempt (connect + greeting + transfer + answer) ends by ATTEMPT_DEADLINE_SECONDS; one sync
# send (every attempt of its failover) by SEND_BUDGET_SECONDS, which must leave the web server's
# own timeout (WEB_TIMEOUT, gunicorn's --timeout, see emailservice/gunicorn.conf.py) room to store
# the outcome and answer.
ATTEMPT_DEADLINE_SECONDS = env_float("ATTEMPT_DEADLINE_SECONDS", 15.0)
SEND_BUDGET_SECONDS = env_float("SEND_BUDGET_SECONDS", 20.0)
WEB_TIMEOUT = env_float("WEB_TIMEOUT", 30.0)
if SEND_BUDGET_SECONDS + 5 > WEB_TIMEOUT:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "SEND_BUDGET_SECONDS must be at least 5 s below WEB_TIMEOUT, so that a send that used "
        "its whole budget is still stored and answered before the web server gives up on it"
    )
BREAKER_THRESHOLD = env_int("BREAKER_THRESHOLD", 3)
BREAKER_RESET_SECONDS = env_float("BREAKER_RESET_SECONDS", 60.0)
# A provider that answers "too fast" (HTTP 429, SES Throttling, an SMTP rate-limit reply) is
# paused, not counted towards its circuit: for its Retry-After, or the default when it names
# none, never longer than the maximum (mailer.delivery.breaker).
THROTTLE_DEFAULT_SECONDS = env_float("THROTTLE_DEFAULT_SECONDS", 5.0)
THROTTLE_MAX_SECONDS = env_float("THROTTLE_MAX_SECONDS", 600.0)
# Pacing (a provider's max_per_second / max_per_day, mailer.delivery.pacing): when every
# provider that could take an email is at its limit, a try waits up to this long (within its
# budget) for the next slot; past it the email is queued for the slot, not failed.
PACING_WAIT_SECONDS = env_float("PACING_WAIT_SECONDS", 10.0)
MAX_MESSAGE_BYTES = env_int("MAX_MESSAGE_BYTES", 10 * 1024 * 1024)
MAX_RECIPIENTS = env_int("MAX_RECIPIENTS", 50)
# Bodies are refused from Content-Length first (mailer.middleware); this caps what Django reads.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_MESSAGE_BYTES
# Batch send (POST /api/v1/emails/batch; README: HTTP API). At most BATCH_MAX_EMAILS emails a
# batch, each checked as a single send; its whole body at most BATCH_MAX_BYTES (this path's own
# limit instead of MAX_MESSAGE_BYTES, refused from Content-Length before it is read). Sync mode
# delivers in the request, so it takes at most BATCH_SYNC_MAX_EMAILS, all within
# SEND_BUDGET_SECONDS.
BATCH_MAX_EMAILS = env_int("BATCH_MAX_EMAILS", 500)
BATCH_MAX_BYTES = env_int("BATCH_MAX_BYTES", 25 * 1024 * 1024)
BATCH_SYNC_MAX_EMAILS = env_int("BATCH_SYNC_MAX_EMAILS", 50)
# A send's `send_at` may be at most this many days ahead (README: Scheduled send); the sweep
# (every SWEEP_INTERVAL_SECONDS) queues a scheduled email once its time has come.
SCHEDULE_MAX_DAYS = env_float("SCHEDULE_MAX_DAYS", 30.0)
# Input limits (README: Input limits). Every door (API, /send_email/, the send form) refuses an
# email over one of these at validation, before anything is stored or composed.
MAX_SUBJECT_CHARS = env_int("MAX_SUBJECT_CHARS", 998)
MAX_HEADERS = env_int("MAX_HEADERS", 20)  # custom headers per email
MAX_HEADER_VALUE_CHARS = env_int("MAX_HEADER_VALUE_CHARS", 998)
MAX_DISPLAY_NAME_CHARS = env_int("MAX_DISPLAY_NAME_CHARS", 200)
MAX_REPLY_TO = env_int("MAX_REPLY_TO", 10)
MAX_ATTACHMENTS = env_int("MAX_ATTACHMENTS", 20)
MAX_FILENAME_CHARS = env_int("MAX_FILENAME_CHARS", 255)
MAX_METADATA_BYTES = env_int("MAX_METADATA_BYTES", 8192)  # as compact JSON, UTF-8
MAX_METADATA_KEYS = env_int("MAX_METADATA_KEYS", 50)  # counted through nested objects
MAX_METADATA_DEPTH = env_int("MAX_METADATA_DEPTH", 5)  # the metadata object is level 1
MAX_JSON_DEPTH = env_int("MAX_JSON_DEPTH", 32)  # nesting of any JSON request body
# (end of input limits)
LIST_CACHE_SECONDS = env_int("LIST_CACHE_SECONDS", 3600)
# (README: Caching and health; mailer.listcache) An account's list version expires this long
# after it was set, so a list lags a write by at most this even when the write's invalidation
# never reached Redis; pages live min(LIST_CACHE_SECONDS, this). Pages hold summaries: the text
# cut to LIST_TEXT_PREVIEW_CHARS, and a page over LIST_CACHE_MAX_BYTES (pickled) isn't cached.
LIST_CACHE_STALE_SECONDS = env_int("LIST_CACHE_STALE_SECONDS", 60)
LIST_TEXT_PREVIEW_CHARS = env_int("LIST_TEXT_PREVIEW_CHARS", 500)
LIST_CACHE_MAX_BYTES = env_int("LIST_CACHE_MAX_BYTES", 256 * 1024)
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/minute")
ALLOW_PRIVATE_PROVIDER_HOSTS = env_bool("ALLOW_PRIVATE_PROVIDER_HOSTS", False)
# Name servers ("host[:port]", comma-separated) to resolve provider hosts with, instead of the
# system resolver. Every outbound connection resolves once and connects to the address it checked.
DNS_NAMESERVERS = env_list("DNS_NAMESERVERS")
# Delivery events (webhooks in). SES's come through SNS, whose signing certificate and
# subscription links must be https on a host matching this (tests name their own host).
SNS_HOST_PATTERN = env_str("SNS_HOST_PATTERN", r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# Soft bounces of one address (within the window) that put it on the suppression list.
SOFT_BOUNCE_LIMIT = env_int("SOFT_BOUNCE_LIMIT", 3)
SOFT_BOUNCE_WINDOW_SECONDS = env_int("SOFT_BOUNCE_WINDOW_SECONDS", 7 * 24 * 3600)
# Where this service is reached from outside ("https://mail.example.com"): the base of the webhook
# URLs shown to providers (Mandrill signs the URL). Empty: the URL the page was requested on.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "")
# A webhook request's body over this is refused before it is read.
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 1024 * 1024)
# Fernet keys, newest first; older keys still decrypt so they can be rotated out.
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS")

# Queue mode (README: Queue mode). The database row is the source of truth; a broker message only
# tells a worker to look at it, so a lost or repeated message can't lose or double an email.
RETRY_BASE_SECONDS = env_float("RETRY_BASE_SECONDS", 60.0)
RETRY_MAX_SECONDS = env_float("RETRY_MAX_SECONDS", 3600.0)
MAX_DELIVERY_AGE = env_float("MAX_DELIVERY_AGE", 24 * 3600.0)
DELIVERY_TIME_LIMIT = env_float("DELIVERY_TIME_LIMIT", 300.0)
SENDING_LEASE_SECONDS = env_float("SENDING_LEASE_SECONDS", 600.0)
REQUEUE_AFTER_SECONDS = env_float("REQUEUE_AFTER_SECONDS", 300.0)
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 30.0)
if SENDING_LEASE_SECONDS <= DELIVERY_TIME_LIMIT:
    from django.core.exceptions import ImproperlyConfigured

    # A live worker must never lose its lease: the hard time limit ends a try before it expires.
    raise ImproperlyConfigured("SENDING_LEASE_SECONDS must be longer than DELIVERY_TIME_LIMIT")
# Sync mode's lease (README: Sync mode's sweep): a send made inside a web request ends within
# SEND_BUDGET_SECONDS and its worker is killed at WEB_TIMEOUT, so an email still `sending` this
# long after a request claimed it was left by a dead worker. The margin covers gunicorn's
# timeout check and clock differences between hosts.
SYNC_SENDING_LEASE_SECONDS = env_float("SYNC_SENDING_LEASE_SECONDS", WEB_TIMEOUT + 30.0)
if SYNC_SENDING_LEASE_SECONDS <= WEB_TIMEOUT:
    from django.core.exceptions import ImproperlyConfigured

    # A request's send must never lose its lease while its worker lives.
    raise ImproperlyConfigured("SYNC_SENDING_LEASE_SECONDS must be longer than WEB_TIMEOUT")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
if DELIVERY_MODE == "queue" and not CELERY_BROKER_URL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "DELIVERY_MODE=queue needs Redis: set REDIS_URL or CELERY_BROKER_URL"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacknowledged message is handed out again after this long. Our tasks never run longer
    # than DELIVERY_TIME_LIMIT and we never use countdown/ETA (the sweep schedules retries), so
    # an hour only matters for a worker that died holding messages; the sweep covers those sooner.
    "visibility_timeout": max(3600, int(4 * DELIVERY_TIME_LIMIT)),
    # Publishing from a web request must not hang when Redis is away: fail fast, answer 202, and
    # let the sweep enqueue it later.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "max_retries": 0,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A running try finishes even if the broker connection drops; its message may then be delivered
# again, and the claim turns that second delivery away.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup would close the database connections around every task; past this many
# tasks it still does, and in between emailservice/celery.py closes only what Django would
# (CONN_MAX_AGE, broken connections) and health-checks the rest.
CELERY_DB_REUSE_MAX = 10_000
CELERY_TASK_TIME_LIMIT = DELIVERY_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = DELIVERY_TIME_LIMIT * 0.9
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "emailservice"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "sweep-outbox": {
        "task": "mailer.tasks.sweep_outbox",
        "schedule": SWEEP_INTERVAL_SECONDS,
        # A sweep that waited past the next one is dropped: the next one does its work.
        "options": {"expires": SWEEP_INTERVAL_SECONDS},
    },
}

# The site's own mail (password resets, admin mail): "default" fails over across the providers
# of MAIL_PROVIDER_URLS in the order given, built from them on first use (mailer.backends);
# `manage.py check` names a URL it can't read (mailer.checks).
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "emailservice <no-reply@localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
MAIL_PROVIDER_URLS = env_list("MAIL_PROVIDER_URLS", "smtp://localhost:25?security=none")
MAILERS = {
    "default": {
        "BACKEND": "mailer.backends.FailoverEmailBackend",
        "OPTIONS": {
            "urls": MAIL_PROVIDER_URLS,
            "timeout": PROVIDER_TIMEOUT,
            "connect_timeout": PROVIDER_CONNECT_TIMEOUT,
            "attempt_deadline": ATTEMPT_DEADLINE_SECONDS,
            # The operator's own URLs: the private-address rule is for what accounts configure.
            "allow_private_hosts": True,
        },
    },
}

# Security: production defaults; `make run` turns DEBUG on and these off through its .env.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# check --deploy asks for preload (W021); an operator who must not be preloaded sets it false.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
)
# Probes and the metrics scraper talk to the app directly, inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_HTTPONLY = True
# A strict Content-Security-Policy: everything from our own origin, no inline script.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "emails"
LOGOUT_REDIRECT_URL = "login"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # At DEBUG the SendGrid SDK's HTTP client logs request headers, the API key included.
    "loggers": {"python_http_client": {"level": "INFO"}},
}

# Accounts and throttling (README: Accounts and throttling). Rates are django-ratelimit's
# "count/period" (s, m, h, d: "20/15m"); every count lives in the cache (Redis when REDIS_URL).
# The client's address, for every throttle (mailer.ratelimit.client_ip): REMOTE_ADDR, unless
# that is one of TRUSTED_PROXIES (addresses or networks, comma-separated: your load balancers);
# then the nearest address in X-Forwarded-For that is not one of them. Default: trust none.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
RATELIMIT_IP_META_KEY = "mailer.ratelimit.client_ip"  # django-ratelimit's own key="ip", too
# Log-in: per account name AND client address, the first LOGIN_FAILURES_BEFORE_BACKOFF failures
# are free, then each failure locks that pair for twice as long as the one before, from
# LOGIN_BACKOFF_SECONDS up to LOGIN_BACKOFF_MAX_SECONDS; a success or a day without failures
# clears it. Per address across names, at most LOGIN_FAILURES_PER_IP failures. The admin's log-in
# shares these counters; the old-password check of password change has the same backoff per
# account.
LOGIN_FAILURES_BEFORE_BACKOFF = env_int("LOGIN_FAILURES_BEFORE_BACKOFF", 5)
LOGIN_BACKOFF_SECONDS = env_float("LOGIN_BACKOFF_SECONDS", 60.0)
LOGIN_BACKOFF_MAX_SECONDS = env_float("LOGIN_BACKOFF_MAX_SECONDS", 3600.0)
LOGIN_FAILURES_FORGET_SECONDS = env_int("LOGIN_FAILURES_FORGET_SECONDS", 24 * 3600)
LOGIN_FAILURES_PER_IP = env_str("LOGIN_FAILURES_PER_IP", "20/15m")
PASSWORD_RESETS_PER_IP = env_str("PASSWORD_RESETS_PER_IP", "10/h")
PASSWORD_RESETS_PER_EMAIL = env_str("PASSWORD_RESETS_PER_EMAIL", "3/h")
# Sign-up finishes from an emailed link (valid SIGNUP_LINK_SECONDS), so the page never tells
# whether a username or address has an account.
SIGNUPS_PER_IP = env_str("SIGNUPS_PER_IP", "10/h")
SIGNUP_EMAILS_PER_ADDRESS = env_str("SIGNUP_EMAILS_PER_ADDRESS", "3/h")
SIGNUP_LINK_SECONDS = env_int("SIGNUP_LINK_SECONDS", 3 * 24 * 3600)
# API tokens: API_RATE_LIMIT is per account (all its tokens share it); at most this many active
# tokens per account (0: no limit).
MAX_API_TOKENS_PER_ACCOUNT = env_int("MAX_API_TOKENS_PER_ACCOUNT", 20)
# Each process remembers a token it authenticated this long: a token revoked elsewhere, or an
# account deactivated, is refused everywhere within it (at once in the process that did it).
TOKEN_CACHE_SECONDS = env_float("TOKEN_CACHE_SECONDS", 1.0)
# Each process remembers what a send reads of its account (providers, webhook endpoints,
# suppression answers), checked against the account's change stamps in Redis at each send: a
# change is seen at once everywhere, and within this bound if its stamp was lost.
ACCOUNT_CACHE_SECONDS = env_float("ACCOUNT_CACHE_SECONDS", 5.0)

# Metrics (README: Metrics). GET /metrics in Prometheus' text format answers 404 unless a token
# (`Authorization: Bearer`) or allowed networks (CIDRs, comma-separated) are set; with both,
# both are required. The client's address is the one throttles use (TRUSTED_PROXIES).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS")
# Bounded labels: at most this many provider configs by id per process (then config="other"),
# and at most this many circuits that are not closed listed one by one.
METRICS_MAX_PROVIDER_LABELS = env_int("METRICS_MAX_PROVIDER_LABELS", 500)
METRICS_MAX_CIRCUITS = env_int("METRICS_MAX_CIRCUITS", 100)
# A Celery worker serves its own counters on this port (0: not at all); give it its own
# PROMETHEUS_MULTIPROC_DIR for a prefork pool (README: Metrics).
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 0)
# prometheus_client's multiprocess mode (gunicorn.conf.py sets it for gunicorn): every process
# that has it writes its counters there, so it must exist before the app records anything.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
# (end of metrics)
