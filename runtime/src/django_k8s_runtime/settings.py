"""Settings helpers, each from the environment: a project may use any, or none.

In a project's ``settings.py``, after its own settings::

    from django_k8s_runtime import settings as runtime

    DATABASES = runtime.databases(BASE_DIR)  # DATABASE_URL + DB_*: TLS checked, pool
    MIDDLEWARE = runtime.middleware(MIDDLEWARE)  # route labels for the metrics
    LOGGING = runtime.logging()  # LOG_FORMAT: JSON lines with request ids

Each checks the whole environment first (every problem at once, one line each),
so ``manage.py`` stops on the same mistakes as the server. Django's own settings
(the secret key, ``DEBUG``, allowed hosts) stay the project's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django_k8s_runtime import database, env, validation
from django_k8s_runtime.observability import logconfig

__all__ = ["caches", "checked", "databases", "logging", "middleware"]

RECORD_ROUTE = "django_k8s_runtime.observability.middleware.record_route"


def checked() -> env.Snapshot:
    """This process's configuration snapshot (:func:`.env.snapshot`), after every
    rule has passed: what a settings module reads its values from."""
    snapshot = env.snapshot()
    validation.check(snapshot)
    return snapshot


def databases(base_dir: Path) -> dict[str, Any]:
    """``DATABASES`` from ``DATABASE_URL`` and ``DB_*``: PostgreSQL with TLS as
    configured and psycopg's pool (SQLite beside ``base_dir`` for a laptop)."""
    return database.databases(base_dir, checked())


def caches() -> dict[str, Any]:
    """``CACHES``: Redis at ``CACHE_URL``, else Django's per-process memory cache."""
    url = checked().CACHE_URL
    if not url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }


def middleware(middleware: list[str]) -> list[str]:
    """The project's ``MIDDLEWARE`` with the runtime's first: it records the URL
    pattern for the metrics' ``route`` label (``/api/items/<int:pk>``, never the raw
    path)."""
    return [RECORD_ROUTE, *(name for name in middleware if name != RECORD_ROUTE)]


def logging() -> dict[str, Any]:
    """``LOGGING``: one format for Gunicorn, the workers, the access log and Django
    (``LOG_FORMAT``, ``LOG_LEVEL``, ``GUNICORN_LOG_LEVEL``), each line with the
    request id of the request it belongs to."""
    snapshot = checked()
    return logconfig.logging_config(
        log_format=snapshot.LOG_FORMAT,
        level=snapshot.LOG_LEVEL,
        server_level=snapshot.GUNICORN_LOG_LEVEL,
    )
