"""Django settings, all read from the environment here (the README's table); development needs none of it."""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from chatweb.localsecrets import derived_fernet_key, local_secret

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"  # ignored by git: the SQLite file, development secrets

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)

if "SECRET_KEY" in env:
    SECRET_KEY = env.str("SECRET_KEY")
elif DEBUG:
    SECRET_KEY = local_secret(VAR_DIR / "secret_key")
else:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (production).")

if "CHATWEB_ENCRYPTION_KEYS" in env:
    CHATWEB_ENCRYPTION_KEYS = env.list("CHATWEB_ENCRYPTION_KEYS")
elif DEBUG:
    CHATWEB_ENCRYPTION_KEYS = [derived_fernet_key(SECRET_KEY)]
else:
    raise ImproperlyConfigured("CHATWEB_ENCRYPTION_KEYS must be set when DEBUG is off (production).")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",  # first: `runserver` then serves ASGI (websockets included)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatweb.security.SecurityHeadersMiddleware",  # CSP and the other headers
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatweb.urls"
ASGI_APPLICATION = "chatweb.asgi.application"
AUTH_USER_MODEL = "conversations.User"

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
                "conversations.context_processors.site",
            ],
        },
    },
]

# --- Database: SQLite by default, PostgreSQL (psycopg 3 with its pool) from DATABASE_URL.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    _db["OPTIONS"] = {
        # WAL lets readers work beside the one writer; IMMEDIATE transactions take the write lock up
        # front so concurrent writers wait (busy timeout) instead of failing with "database is locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not memory, for the test database: live Daphne processes in the tests must share it.
    # One per test process, so two test runs on one machine never share (and break) one file.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
elif _db["ENGINE"] in ("django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"):
    _db["ENGINE"] = "django.db.backends.postgresql"
    # Async code must not keep per-thread connections open: CONN_MAX_AGE 0 plus psycopg's pool.
    _db["CONN_MAX_AGE"] = 0
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}_{os.getpid()}"}  # one per test run, as for SQLite
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("CHATWEB_DB_POOL_MIN", default=2),
        "max_size": env.int("CHATWEB_DB_POOL_MAX", default=20),
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer: in-memory by default, Redis across several Daphne processes from REDIS_URL.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same as channels_redis's
                # 5 s BZPOPMIN: an idle receive then fails. A longer read timeout keeps them apart.
                # Its pool also holds at most 100 connections by default and fails the 101st command in
                # flight (MaxConnectionsError): a burst of new sockets joining their groups at once needs more.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5,
                           "max_connections": env.int("CHATWEB_REDIS_MAX_CONNECTIONS", default=2000)}],
                "capacity": env.int("CHATWEB_CHANNEL_CAPACITY", default=1500),
                "expiry": 30,
                "group_expiry": 86400,
                "prefix": env.str("CHATWEB_CHANNEL_PREFIX", default="chatweb"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # channels' in-memory layer without its per-message scans of every channel (chatweb/layers.py).
            "BACKEND": "chatweb.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env.int("CHATWEB_CHANNEL_CAPACITY", default=1500), "expiry": 30},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Passwords (ModelBackend) and OpenID Connect sign-in; the latter does nothing while CHATWEB_OIDC_ISSUER is unset.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "conversations.accounts.oidc.OidcBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files are served from the ASGI app by ServeStatic (chatweb/asgi.py), from the app and project folders.
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # httpx logs every request URL at INFO; URLs carry no keys, but the noise buries real problems.
        "httpx": {"level": "WARNING"},
    },
}

# --- chatweb's own switches.
CHATWEB_SIGNUP = env.str("CHATWEB_SIGNUP", default="open" if DEBUG else "closed")
if CHATWEB_SIGNUP not in ("open", "closed"):
    raise ImproperlyConfigured("CHATWEB_SIGNUP must be 'open' or 'closed'.")
CHATWEB_UPSTREAM_MAX_CONNECTIONS = env.int("CHATWEB_UPSTREAM_MAX_CONNECTIONS", default=1000)
# The staff-chosen model (public name) that `auto` on /v1 prefers (conversations/api/routing.py); empty: none.
CHATWEB_DEFAULT_MODEL = env.str("CHATWEB_DEFAULT_MODEL", default="")
# The model (public name) new chats open with when neither the user nor the admin's "default for new chats" flag
# names a usable one (conversations/catalog/defaults.py); empty: CHATWEB_DEFAULT_MODEL, then the first usable model.
CHATWEB_DEFAULT_CHAT_MODEL = env.str("CHATWEB_DEFAULT_CHAT_MODEL", default="")
# Minutes a provider that could not be connected to stays flagged "unreachable" in the model picker.
CHATWEB_UNREACHABLE_MINUTES = env.int("CHATWEB_UNREACHABLE_MINUTES", default=10)
# A streaming reply whose heartbeat (written at least every 5 s, and 3x per this period) is older than this is taken
# for dead, its process gone, and marked `interrupted` by any process's reaper (docs/deployment.md).
CHATWEB_REAP_STALE_SECONDS = env.float("CHATWEB_REAP_STALE_SECONDS", default=30.0)
# A model (public name) that writes each conversation's title after its first reply; empty: the first line.
CHATWEB_TITLE_MODEL = env.str("CHATWEB_TITLE_MODEL", default="")

# --- Attachments (docs/attachments.md). Files go through Django's storage API under the alias "attachments": the
# local filesystem under var/ by default; any django-storages backend (S3 and compatible) by replacing that entry.
CHATWEB_ATTACHMENTS_DIR = env.path("CHATWEB_ATTACHMENTS_DIR", default=VAR_DIR / "attachments")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(CHATWEB_ATTACHMENTS_DIR), "base_url": None},
    },
}
CHATWEB_ATTACHMENT_MAX_BYTES = env.int("CHATWEB_ATTACHMENT_MAX_BYTES", default=20 * 1024 * 1024)
CHATWEB_ATTACHMENT_IMAGE_SIDE = env.int("CHATWEB_ATTACHMENT_IMAGE_SIDE", default=2048)  # long side, in pixels
CHATWEB_ATTACHMENTS_PER_MESSAGE = env.int("CHATWEB_ATTACHMENTS_PER_MESSAGE", default=10)
CHATWEB_ATTACHMENT_QUOTA_BYTES = env.int("CHATWEB_ATTACHMENT_QUOTA_BYTES", default=1024 * 1024 * 1024)  # per user
# Uploads never sent with a message are deleted (files and rows) after this many hours (0: kept): by every server
# process about hourly, and by `manage.py cleanupattachments`.
CHATWEB_ATTACHMENT_UNSENT_HOURS = env.float("CHATWEB_ATTACHMENT_UNSENT_HOURS", default=24.0)

# --- Security (docs/security.md). Production (DEBUG off) is HTTPS only, behind a TLS proxy such as
# nginx; development (DEBUG on) stays plain HTTP on 127.0.0.1:8000. `manage.py check --deploy` passes clean.
_production = not DEBUG
# Reverse proxies in front of chatweb (nginx alone: 1). Only then are X-Forwarded-Proto (HTTPS detection) and
# X-Forwarded-For (the client address for throttling: the hop the outermost trusted proxy appended) believed.
CHATWEB_TRUSTED_PROXIES = env.int("CHATWEB_TRUSTED_PROXIES", default=0)
if CHATWEB_TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_production)
SESSION_COOKIE_SECURE = _production
CSRF_COOKIE_SECURE = _production
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if _production else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preload is a one-way commitment for the whole registrable domain, so it is opt-in; Django's reminder
# about it (security.W021) is silenced only while it is deliberately off.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Cache: the sign-in and API-key failure counters (conversations/accounts/throttle.py). Per process by default; in
# Redis when REDIS_URL is set, so every Daphne process sees the same counters.
_cache_prefix = env.str("CHATWEB_CHANNEL_PREFIX", default="chatweb")  # one namespace per deployment
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CHATWEB_CACHE_PREFIX", default=_cache_prefix),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "chatweb"}}

# Failed sign-ins per account and per client address (failed API keys per address) are slowed, then locked.
CHATWEB_THROTTLE_ACCOUNT_FAILURES = env.int("CHATWEB_THROTTLE_ACCOUNT_FAILURES", default=5)
CHATWEB_THROTTLE_ADDRESS_FAILURES = env.int("CHATWEB_THROTTLE_ADDRESS_FAILURES", default=20)  # shared NATs
CHATWEB_THROTTLE_LOCK_SECONDS = env.int("CHATWEB_THROTTLE_LOCK_SECONDS", default=15 * 60)

# Websocket limits (conversations/chat/commands.py holds the frame and message sizes).
CHATWEB_MAX_CONCURRENT_REPLIES = env.int("CHATWEB_MAX_CONCURRENT_REPLIES", default=4)  # streaming, per user
CHATWEB_WS_IDLE_SECONDS = env.int("CHATWEB_WS_IDLE_SECONDS", default=900)  # then the socket is closed (4408)
# A temporary chat is deleted this long after the last socket showing it closed, unless a socket (the same tab,
# reconnecting after a dropped connection or a restart) shows it again meanwhile; 0: at once.
CHATWEB_TEMPORARY_GRACE_SECONDS = env.float("CHATWEB_TEMPORARY_GRACE_SECONDS", default=10.0)

# Email (budget alerts): the console backend in development, SMTP when EMAIL_HOST is set.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if "EMAIL_HOST" in env
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="chatweb@localhost")

# --- Single sign-on (OpenID Connect, docs in the README). Everything else comes from the provider's discovery
# document at <issuer>/.well-known/openid-configuration; the redirect URI to register is <site>/oidc/callback/.
CHATWEB_OIDC_ISSUER = env.str("CHATWEB_OIDC_ISSUER", default="").rstrip("/")
CHATWEB_OIDC_CLIENT_ID = env.str("CHATWEB_OIDC_CLIENT_ID", default="")
CHATWEB_OIDC_CLIENT_SECRET = env.str("CHATWEB_OIDC_CLIENT_SECRET", default="")
CHATWEB_OIDC_NAME = env.str("CHATWEB_OIDC_NAME", default="Single sign-on")  # the sign-in button's label
# The claim whose list of names the user's groups follow at each sign-in; empty: groups are left alone.
CHATWEB_OIDC_GROUPS_CLAIM = env.str("CHATWEB_OIDC_GROUPS_CLAIM", default="groups")
# Email domains whose people may sign in through the provider (e.g. example.org); empty: any.
CHATWEB_OIDC_ALLOWED_DOMAINS = [d.lower().lstrip("@") for d in env.list("CHATWEB_OIDC_ALLOWED_DOMAINS", default=[])]
if CHATWEB_OIDC_ISSUER and not CHATWEB_OIDC_CLIENT_ID:
    raise ImproperlyConfigured("CHATWEB_OIDC_CLIENT_ID must be set with CHATWEB_OIDC_ISSUER.")
# Off: the sign-in page offers only single sign-on (staff keep /admin/login/).
CHATWEB_LOCAL_LOGIN = env.bool("CHATWEB_LOCAL_LOGIN", default=True)
