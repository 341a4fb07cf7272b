"""Django settings: one module, every value from the environment.

Production is the default: DEBUG off, a secret key required, HTTPS assumed. The
quickstart (`make run`) sets the few variables a laptop needs; nothing here reads
a file or guesses.

The runtime (django_k8s_runtime) is used as any project would use it, through its
public settings helpers; Django's own variables are this project's
(config/env.py). Every value is read from the process's configuration snapshot,
after the whole of it has been checked: ``manage.py`` comes through here without
the Gunicorn config module, and must stop on the same problems, all listed at once.
"""

import logging
from pathlib import Path

import config.env  # noqa: F401 - declares this project's variables before they are read
from django_k8s_runtime import settings as runtime

BASE_DIR = Path(__file__).resolve().parent.parent

snapshot = runtime.checked()

DEBUG = snapshot.DJANGO_DEBUG
# Set unless DEBUG is on (a start-up rule); a debug server gets a throw-away one.
SECRET_KEY = snapshot.DJANGO_SECRET_KEY or "debug-only-" + "x" * 40

ALLOWED_HOSTS = list(snapshot.DJANGO_ALLOWED_HOSTS)
if DEBUG and not ALLOWED_HOSTS:
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = list(snapshot.DJANGO_CSRF_TRUSTED_ORIGINS)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE = runtime.middleware(MIDDLEWARE)  # the route pattern for the metrics' labels

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# The example's WebSocket broadcast (example/consumers.py) goes through this layer.
# Every consumer joining or leaving a group holds a pooled Redis connection for the
# command: after a rollout a worker's clients reconnect at once, and redis-py's pool
# (100 connections by default) refuses the rest ("Too many connections") instead of
# making them wait. Sized by the most consumers a worker holds, it never refuses.
# After Redis restarts, each pooled connection fails its next command once: redis-py
# reconnects and tries that command again instead (retry_on_error). While Redis is
# away, the runtime closes the sockets in a group with 1012 and leaves the others
# alone; HEALTH_CHECKS=database,channel_layer makes the pod unready meanwhile.
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

# The example app's upstream service (example/services.py).
EXAMPLE_UPSTREAM_URL = snapshot.EXAMPLE_UPSTREAM_URL

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

# Static files: collected at build time, compressed and served with far-future
# cache headers by WhiteNoise (no separate web server in the pod).
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Security. TLS usually ends at the ingress; Uvicorn takes the scheme from
# X-Forwarded-Proto only from GUNICORN_FORWARDED_ALLOW_IPS, so no
# SECURE_PROXY_SSL_HEADER is needed (or safe) here.
HTTPS = snapshot.DJANGO_HTTPS
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = snapshot.DJANGO_HSTS_SECONDS if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and snapshot.DJANGO_HSTS_PRELOAD
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Preloading is a decision to submit the domain to browsers' lists and is hard
# to undo, so it is opt-in (DJANGO_HSTS_PRELOAD) and its reminder is silenced.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = runtime.logging()  # the same for Gunicorn, the workers and Django
logging.captureWarnings(True)  # Python warnings become log records (JSON in JSON mode)
