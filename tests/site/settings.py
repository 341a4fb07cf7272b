"""The runtime's test site: a small Django project made with the runtime's own
helpers (``django_k8s_runtime.settings``), as README's adoption makes one, plus the
views, checks and consumers only tests need. tests/runtime/ runs on it alone: nothing
here is this repository's service (config/, example/).

Production-like: DEBUG off, HTTPS assumed, a secret key required. Its variables are
its own (tests/site/env.py); a test server gets them from tests/support/server.py,
the pytest process from tests/site/in_process.py.
"""

from pathlib import Path

import django

import tests.site.env  # noqa: F401 - declares the site's variables before they are read
from django_k8s_runtime import settings as runtime

BASE_DIR = Path(__file__).resolve().parents[2]  # the repository: db.sqlite3, build/

snapshot = runtime.checked()

DEBUG = snapshot.DJANGO_DEBUG
SECRET_KEY = snapshot.DJANGO_SECRET_KEY or "debug-only-" + "x" * 40
ALLOWED_HOSTS = list(snapshot.DJANGO_ALLOWED_HOSTS)

INSTALLED_APPS = [
    "django.contrib.admin",  # its routes (a label with an include) and its static files
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    # Outermost: records which thread runs the chain (tests/runtime/server/test_handler.py).
    "tests.site.middleware.record_threads",
    *runtime.middleware(
        [
            "django.middleware.security.SecurityMiddleware",
            # Static files, answered before any URL is resolved: streamed from a file,
            # and the route label "static".
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ]
    ),
]

ROOT_URLCONF = "tests.site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = runtime.databases(BASE_DIR)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CACHES = runtime.caches()

# The test consumers' group goes through this layer; Redis as a production project
# sizes it (a connection for each socket a worker may hold, the command tried again
# once on a connection Redis dropped while it restarted).
if snapshot.CHANNEL_LAYER_URL:
    from redis.exceptions import ConnectionError as RedisConnectionError

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": snapshot.CHANNEL_LAYER_URL,
                        "max_connections": snapshot.WEBSOCKET_MAX_CONNECTIONS
                        + snapshot.GUNICORN_THREADS,
                        "retry_on_error": [RedisConnectionError],
                    }
                ]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

UPSTREAM_URL = snapshot.UPSTREAM_URL  # a URL setting: its password is not on the debug page

TIME_ZONE = "UTC"
USE_TZ = True

# The suite's own collected static files (tests/conftest.py collects them once), so
# test servers never see `staticfiles/` half-rewritten by a `make run` nearby; one
# directory per Django series, whose admin files differ (make test-series).
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "build" / "test-static" / "django-{}.{}".format(*django.VERSION[:2])

# Security as in production: TLS ends at the ingress (X-Forwarded-Proto from loopback).
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 31536000
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = runtime.logging()

# Idle background threads end after 2 s here (60 s in production), so a test can
# watch what a thread's end does to the connections it held.
from django_k8s_runtime.server import threads as _threads  # noqa: E402

_threads.IDLE_SECONDS = 2.0
