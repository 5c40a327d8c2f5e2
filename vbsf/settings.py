"""Settings for the console, driven only by ``VBSF_*`` environment variables.

There is one settings module. Differences between the demo, tests and
production come from the environment, never from extra settings files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Values that must never reach production. The demo and .env.example use them.
PLACEHOLDER_VALUES = {"", "change-me", "changeme", "insecure", "placeholder"}


def envstr(name: str, default: str = "") -> str:
    """Read ``VBSF_<name>``, or the file named by ``VBSF_<name>_FILE``."""
    if path := os.environ.get(f"VBSF_{name}_FILE"):
        p = Path(path)
        if not p.is_file():
            raise ImproperlyConfigured(f"VBSF_{name}_FILE points to {path}, not a file")
        return p.read_text().strip()
    return os.environ.get(f"VBSF_{name}", default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(f"VBSF_{name}")
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"VBSF_{name} must be true or false, not {raw!r}")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(f"VBSF_{name}")
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"VBSF_{name} must be an integer") from None


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(f"VBSF_{name}")
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"VBSF_{name} must be a number") from None


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", False)
TESTING = envbool("TESTING", False)

SECRET_KEY = envstr("SECRET_KEY")
# Fernet keys for secrets at rest, newest first. They are deliberately not
# derived from SECRET_KEY so that rotating one never breaks the other.
ENCRYPTION_KEYS = envlist("ENCRYPTION_KEYS")

if not DEBUG:
    if SECRET_KEY.lower() in PLACEHOLDER_VALUES or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "VBSF_SECRET_KEY is missing or a placeholder; set a long random value "
            "(or VBSF_DEBUG=true for local development)."
        )
    if not ENCRYPTION_KEYS or any(
        k.lower() in PLACEHOLDER_VALUES for k in ENCRYPTION_KEYS
    ):
        raise ImproperlyConfigured(
            "VBSF_ENCRYPTION_KEYS is missing or a placeholder; generate one with "
            "`python manage.py generate_encryption_key`."
        )
elif not SECRET_KEY:
    SECRET_KEY = "insecure-development-key-only-for-debug-mode-0123456789"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

# The console's own external base URL. The OAuth callback URL that admins
# register in their Salesforce apps is built from it.
PUBLIC_URL = envstr("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "vbsf.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "formtools",
    "companies",
    "orgs",
    "connections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "companies.middleware.AccessMiddleware",
    "vbsf.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "vbsf.urls"
WSGI_APPLICATION = "vbsf.wsgi.application"

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
                "companies.context_processors.access",
                "orgs.context_processors.attention",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'vbsf.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", 0),
    )
}
DB_POOL_SIZE = envint("DB_POOL_SIZE", 0)
if DB_POOL_SIZE > 0 and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # psycopg's pool (Django's "pool" option), up to this many connections per
    # process. Celery's Django fix-up closes the connection after every task,
    # so a worker without a pool opens a new PostgreSQL backend for each task
    # (persistent connections do not survive that); with one, closing hands
    # the connection back. The pool and VBSF_DB_CONN_MAX_AGE exclude each other.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks on loan
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_SIZE,
        "timeout": envint("DB_POOL_TIMEOUT", 10),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Worker and web server share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # Tests run a real worker in another process, so the test database must
    # be a file that both can open (an in-memory one would be private).
    # One file per test run, so two runs on one machine do not collide.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHE_URL = envstr("CACHE_URL")
if CACHE_URL.startswith("redis"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "vbsf_cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Password guessing (companies/signin_throttle.py), failures counted over the
# last LOGIN_LOCKOUT_SECONDS: this many for one username at one address lock
# that pair; more for one username from anywhere lock the username; many more
# from one address for any usernames lock the address. Each higher limit must
# exceed the pair's, or one address could lock out an account used elsewhere
# (or one account the other accounts at its address).
LOGIN_MAX_FAILURES = envint("LOGIN_MAX_FAILURES", 5)
LOGIN_MAX_FAILURES_PER_USERNAME = envint("LOGIN_MAX_FAILURES_PER_USERNAME", 20)
LOGIN_MAX_FAILURES_PER_ADDRESS = envint("LOGIN_MAX_FAILURES_PER_ADDRESS", 100)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 900)
if not (
    0 < LOGIN_MAX_FAILURES < LOGIN_MAX_FAILURES_PER_USERNAME
    and LOGIN_MAX_FAILURES < LOGIN_MAX_FAILURES_PER_ADDRESS
):
    raise ImproperlyConfigured(
        "VBSF_LOGIN_MAX_FAILURES must be at least 1 and below both "
        "VBSF_LOGIN_MAX_FAILURES_PER_USERNAME and VBSF_LOGIN_MAX_FAILURES_PER_ADDRESS"
    )
if LOGIN_LOCKOUT_SECONDS < 1:
    raise ImproperlyConfigured("VBSF_LOGIN_LOCKOUT_SECONDS must be at least 1")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `collectstatic` writes here (`make demo` and the Docker image run it);
# WhiteNoise's middleware serves it with debug off, under runserver and
# gunicorn alike. With debug on it serves straight from the app and project
# folders instead (WHITENOISE_USE_FINDERS defaults to DEBUG).
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed names whatever DEBUG says, so a `collectstatic`
        # run with debug on (as the Dockerfile does) still writes the
        # manifest that debug-off pages need; with debug on, {% static %}
        # gives unhashed names and needs no manifest. Tests skip hashing.
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Security. HTTPS settings follow VBSF_HTTPS, which is on by default outside
# debug mode; the embedded demo runs on plain http on localhost.
HTTPS = envbool("HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and envbool("SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = envint("HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_PROXY", False) else None
)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = envint("SESSION_AGE_SECONDS", 8 * 3600)
# Database sessions that name their user: deactivation ends them at once.
SESSION_ENGINE = "companies.sessions"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# The client's address, for the audit trail and the sign-in throttle alike
# (companies.audit.client_ip). Only trust X-Forwarded-For behind a proxy, and
# there only the value written by the last TRUSTED_PROXY_HOPS proxies,
# counted from the right: what lies further left the client wrote itself.
TRUST_X_FORWARDED_FOR = envbool("BEHIND_PROXY", False)
TRUSTED_PROXY_HOPS = envint("TRUSTED_PROXY_HOPS", 1)
if TRUSTED_PROXY_HOPS < 1:
    raise ImproperlyConfigured(
        "VBSF_TRUSTED_PROXY_HOPS is the number of proxies in front of the "
        "console, at least 1"
    )

# Salesforce. The simulator URL is empty in production; when set, the
# Salesforce client (and nothing else) maps every Salesforce URL onto it.
SALESFORCE_SIMULATOR_URL = envstr("SALESFORCE_SIMULATOR_URL").rstrip("/")
SALESFORCE_CONNECT_TIMEOUT = envfloat("SALESFORCE_CONNECT_TIMEOUT", 5.0)
SALESFORCE_READ_TIMEOUT = envfloat("SALESFORCE_READ_TIMEOUT", 20.0)
SALESFORCE_API_VERSION = envstr("SALESFORCE_API_VERSION", "66.0")
SALESFORCE_MAX_RETRIES = envint("SALESFORCE_MAX_RETRIES", 2)
SALESFORCE_RETRY_BACKOFF = envfloat("SALESFORCE_RETRY_BACKOFF", 0.5)
# Salesforce says new or changed apps take up to 10 minutes to activate.
ACTIVATION_WINDOW_SECONDS = envint("ACTIVATION_WINDOW_SECONDS", 600)
ACTIVATION_MARGIN_SECONDS = envint("ACTIVATION_MARGIN_SECONDS", 300)
HEALTH_CHECK_INTERVAL_SECONDS = envint("HEALTH_CHECK_INTERVAL_SECONDS", 3600)
HEALTH_RETRY_BACKOFF_SECONDS = envfloat("HEALTH_RETRY_BACKOFF_SECONDS", 5.0)
# A bulk action (SPEC §9) runs its orgs in at most this many tasks at once.
BULK_CONCURRENCY = envint("BULK_CONCURRENCY", 8)
# How long an org's access token is reused (encrypted, in the cache) before a
# refresh. Salesforce ends a session after inactivity: 2 hours by default, 15
# minutes at the shortest an org can set. The default (90 minutes) outlives
# the hourly health check, so steady checks cost one request, and stays
# under the default session; an org with a shorter timeout answers
# INVALID_SESSION_ID, which costs one refresh and one retry, never a failure.
ACCESS_TOKEN_CACHE_SECONDS = envint("ACCESS_TOKEN_CACHE_SECONDS", 5400)

# Celery. The embedded default is kombu's filesystem transport, which needs
# no server; production sets VBSF_BROKER_URL=redis://...
CELERY_DATA_DIR = BASE_DIR / envstr(
    "CELERY_DATA_DIR",
    f"var/test-celery-{os.getpid()}" if TESTING else "var/celery",
)
CELERY_BROKER_URL = envstr("BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
        # Poll the queue folder often: a wizard step should not wait a second
        # for its task to start.
        "polling_interval": 0.1,
    }
    # kombu's filesystem transport with whole-message writes: the stock one
    # lets a worker read a half-written message and die (celery/kombu#1551).
    # kombu takes an explicit transport over the URL's scheme, so code that
    # points the app at another broker clears this too.
    CELERY_BROKER_TRANSPORT = "vbsf.filesystem_broker:Transport"
else:
    # A task whose worker died is redelivered after this long (acks_late).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True  # results could carry data; tasks write the DB
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = envint("TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = envint("TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Where the console sends a browser (CSP form-action): Salesforce's login and
# My Domain hosts; every URL stored for an org passes the client's allow-list,
# which is narrower still.
SALESFORCE_BROWSER_HOSTS = ["https://*.salesforce.com"]

CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DATA_DIR / "beat-schedule")
# One beat only: two beats started by mistake must not schedule twice. On
# Redis, celery-redbeat keeps the schedule in Redis under a lock that one beat
# holds and extends on every tick; another beat waits (polling every
# BEAT_MAX_INTERVAL seconds) and takes over when the holder is gone for
# BEAT_LOCK_TIMEOUT seconds. Its client rides out a Redis restart for
# retry_period seconds. The embedded broker has no server to lock in: there
# vbsf.celery.FileLockScheduler holds a file lock on the one machine.
CELERY_BEAT_MAX_LOOP_INTERVAL = envint("BEAT_MAX_INTERVAL", 10)
if CELERY_BROKER_URL.startswith("redis"):
    CELERY_BEAT_SCHEDULER = "vbsf.celery:RedisLockScheduler"
    CELERY_REDBEAT_REDIS_URL = CELERY_BROKER_URL
    CELERY_REDBEAT_KEY_PREFIX = "vbsf-beat:"
    CELERY_REDBEAT_LOCK_TIMEOUT = envint("BEAT_LOCK_TIMEOUT", 60)
    CELERY_REDBEAT_REDIS_OPTIONS = {"retry_period": 60}
else:
    CELERY_BEAT_SCHEDULER = "vbsf.celery:FileLockScheduler"
CELERY_BEAT_SCHEDULE = {
    "prune-signin-attempts": {
        "task": "connections.tasks.prune_signin_attempts",
        "schedule": 3600,
    },
    # Campaigns: links expire at the deadline (checked each minute);
    # reminders go out at most once a day per row (checked hourly).
    "expire-campaigns": {
        "task": "connections.tasks.expire_campaigns",
        "schedule": 60,
    },
    "remind-campaigns": {
        "task": "connections.tasks.remind_campaigns",
        "schedule": 3600,
    },
    # Safety net for probe chains lost to a worker or broker restart.
    "resume-connection-changes": {
        "task": "connections.tasks.resume_connection_changes",
        "schedule": envint("RESUME_CHANGES_SECONDS", 30),
    },
    # Bulk actions whose tasks were lost go on where they stopped.
    "resume-bulk-actions": {
        "task": "connections.tasks.resume_bulk_actions",
        "schedule": 120,
    },
    "resume-url-verifications": {
        "task": "orgs.tasks.resume_url_verifications",
        "schedule": 120,
    },
    "check-all-orgs": {
        "task": "orgs.tasks.check_all_orgs",
        "schedule": HEALTH_CHECK_INTERVAL_SECONDS,
    },
    "alert-digests": {
        "task": "orgs.tasks.send_alert_digests",
        "schedule": envint("ALERT_DIGEST_SECONDS", 300),
    },
    "resume-notifications": {
        "task": "companies.tasks.resume_notifications",
        "schedule": 120,
    },
    # Invitation mails whose task was lost are sent again.
    "resume-invitations": {
        "task": "companies.tasks.resume_invitations",
        "schedule": 120,
    },
}
# Benchmarks compress the activation schedule; the schedule stays the same.
ACTIVATION_TIME_SCALE = envfloat("ACTIVATION_TIME_SCALE", 1.0)

EMAIL_BACKEND = envstr(
    "EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "console@vbsf.invalid")
EMAIL_FILE_PATH = envstr("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
# One URL for the mail server (smtp://user:password@host:587/?tls=True,
# submission://..., console:, filemail:/path); what it sets wins over the
# single VBSF_EMAIL_* variables above, which keep working without it.
if EMAIL_URL := envstr("EMAIL_URL"):
    _email = dj_email_url.parse(EMAIL_URL)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
    EMAIL_PORT = _email["EMAIL_PORT"] or 25
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
    EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"] or EMAIL_TIMEOUT
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"] or EMAIL_FILE_PATH
    DEFAULT_FROM_EMAIL = _email.get("DEFAULT_FROM_EMAIL", DEFAULT_FROM_EMAIL)

# Invitations (/users/): the set-password link is valid this long, and one
# address may open this many unknown or spent links per LOGIN_LOCKOUT_SECONDS.
INVITATION_HOURS = envint("INVITATION_HOURS", 72)
INVITE_MAX_FAILURES_PER_ADDRESS = envint("INVITE_MAX_FAILURES_PER_ADDRESS", 20)

# Webhooks (/settings/notifications/) go out through vbsf/http.py: https
# only, no redirects, these timeouts, and never to a non-public address but
# for the hosts listed here (local receivers in tests). A CA bundle replaces
# the system's trust store for them (a test receiver's own certificate).
WEBHOOK_ALLOWED_HOSTS = envlist("WEBHOOK_ALLOWED_HOSTS")
WEBHOOK_CA_BUNDLE = envstr("WEBHOOK_CA_BUNDLE")
WEBHOOK_CONNECT_TIMEOUT = envfloat("WEBHOOK_CONNECT_TIMEOUT", 5.0)
WEBHOOK_READ_TIMEOUT = envfloat("WEBHOOK_READ_TIMEOUT", 10.0)
# Each notification is tried this many times in all, waiting about
# NOTIFICATION_RETRY_BACKOFF * 2**n seconds (with jitter) in between.
NOTIFICATION_MAX_ATTEMPTS = envint("NOTIFICATION_MAX_ATTEMPTS", 5)
NOTIFICATION_RETRY_BACKOFF = envfloat("NOTIFICATION_RETRY_BACKOFF", 30.0)


class ClientErrorsWithoutTraceback(logging.Filter):
    """A 4xx is the client's doing, not the console's: one line, no
    traceback. Django logs a 403 (PermissionDenied) and a 400
    (SuspiciousOperation, on django.security.*) with the exception's
    traceback; 5xx keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


# "plain" lines, or "json": one JSON object a line (python-json-logger),
# through the same redaction filter.
LOG_FORMAT = envstr("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("VBSF_LOG_FORMAT must be plain or json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "vbsf.logging.RedactSecretsFilter"},
        "client_errors": {"()": ClientErrorsWithoutTraceback},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "vbsf.logging.json_formatter"},
    },
    # One handler, and every record reaches it through the root logger, so
    # every line is redacted. Handlers of Django's default configuration are
    # replaced: its debug-only console handler printed each traceback a
    # second time, and its django.server handler had no redaction.
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact", "client_errors"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        # django.request logs every 4xx and 5xx once; the filter here (and
        # not only on the handler) keeps a 403 to one line for any handler.
        "django.request": {
            "level": "WARNING",
            # Redacted here too (not only on the handler): its lines carry
            # request paths, and a delegated link's path is its token.
            "filters": ["client_errors", "redact"],
            "propagate": True,
        },
        # runserver's access log: its 4xx lines would repeat django.request's.
        "django.server": {"level": "ERROR", "handlers": [], "propagate": True},
        # Its DEBUG lines name every request's path, and a webhook's path can
        # be its key (Slack's): never logged, whatever VBSF_LOG_LEVEL says.
        "urllib3.connectionpool": {"level": "INFO", "propagate": True},
    },
}
# The Celery worker would otherwise swap the root logger's handler for its
# own, without the redaction filter; this way its lines go through "console".
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

ADMIN_ENABLED = envbool("ADMIN_ENABLED", True)
# /metrics (Prometheus) answers only a scraper that sends this as a Bearer
# token; unset, the page does not exist (404).
METRICS_TOKEN = envstr("METRICS_TOKEN")
