"""Django settings: one module, every value from the environment (config/env.py).

Production is the default: DEBUG off, a secret key required, HTTPS assumed. The
quickstart (`make run`) sets the few variables a laptop needs; nothing here reads
a file or guesses.
"""

import logging
from pathlib import Path

from config import database, env
from config.env import ConfigError
from observability.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.DJANGO_DEBUG.value()

SECRET_KEY = env.DJANGO_SECRET_KEY.value()
if SECRET_KEY is None:
    if not DEBUG:
        raise ConfigError(
            "DJANGO_SECRET_KEY is not set; production needs one (at least 50 random "
            "characters), e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )
    SECRET_KEY = "debug-only-" + "x" * 40

ALLOWED_HOSTS = list(env.DJANGO_ALLOWED_HOSTS.value())
if DEBUG and not ALLOWED_HOSTS:
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = list(env.DJANGO_CSRF_TRUSTED_ORIGINS.value())

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
    "observability.middleware.record_route",  # route pattern for metrics labels
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

DATABASES = database.databases(BASE_DIR)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if env.CACHE_URL.value():
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.CACHE_URL.value(),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }

# The example app's upstream service (example/services.py).
EXAMPLE_UPSTREAM_URL = env.EXAMPLE_UPSTREAM_URL.value()

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
HTTPS = env.DJANGO_HTTPS.value()
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.DJANGO_HSTS_SECONDS.value() if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env.DJANGO_HSTS_PRELOAD.value()
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Preloading is a decision to submit the domain to browsers' lists and is hard
# to undo, so it is opt-in (DJANGO_HSTS_PRELOAD) and its reminder is silenced.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING_CONFIG = None  # configured once, below, for Django and the server alike
LOGGING = logging_config(
    log_format=env.LOG_FORMAT.value(),
    level=env.LOG_LEVEL.value(),
    server_level=env.GUNICORN_LOG_LEVEL.value(),
)
logging.captureWarnings(True)  # Python warnings become log records (JSON in JSON mode)
