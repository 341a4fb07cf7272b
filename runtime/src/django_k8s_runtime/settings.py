"""Settings helpers, each from the environment: a project may use any, or none.

In a project's ``settings.py``, after its own settings::

    from django_k8s_runtime import settings as runtime

    DATABASES = runtime.databases(BASE_DIR, default=DATABASES)  # DATABASE_URL + DB_*, else yours
    MIDDLEWARE = runtime.middleware(MIDDLEWARE)  # route labels for the metrics
    LOGGING = runtime.logging()  # LOG_FORMAT: JSON lines with request ids

Each checks the whole environment first (every problem at once, one line each),
so ``manage.py`` stops on the same mistakes as the server; a helper given what it
cannot use stops the same way, in one line. Django's own settings (the secret
key, ``DEBUG``, allowed hosts) stay the project's.

With split settings (``base.py`` and ``production.py``), a ``LOGGING`` set after
``runtime.logging()`` replaces the runtime's: start-up, ``check-env`` and Django's
system checks warn about it (:func:`logging_replaced`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django_k8s_runtime import database, env, validation
from django_k8s_runtime.observability import logconfig

__all__ = ["caches", "checked", "databases", "logging", "middleware"]

RECORD_ROUTE = "django_k8s_runtime.observability.middleware.record_route"


def checked() -> env.Snapshot:
    """This process's configuration snapshot (:func:`.env.snapshot`), after every
    rule has passed: what a settings module reads its values from. The rules run
    once for a snapshot (again only when the snapshot or the rules changed: a
    project's own declared, or added), however many helpers ask."""
    snapshot = env.snapshot()
    passed = (snapshot, len(validation.RULES))
    if _passed != list(passed):
        validation.check(snapshot)
        _passed[:] = passed
    return snapshot


_passed: list[Any] = []  # the snapshot and the number of rules last checked


def databases(
    base_dir: str | os.PathLike[str], default: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``DATABASES`` from ``DATABASE_URL`` and ``DB_*``: PostgreSQL with TLS as
    configured and psycopg's pool.

    ``base_dir`` is the project's directory (``BASE_DIR``, a ``str`` or a ``Path``),
    where a relative SQLite path is. ``default`` is the settings' own ``DATABASES``:
    kept as they are while ``DATABASE_URL`` is not set (a ``DB_*`` variable that
    shapes the URL's database is then an error, as it would have no effect), and
    their other databases kept beside the URL's when it is. Without ``default``, an
    unset ``DATABASE_URL`` is its default: SQLite beside ``base_dir``."""
    if not isinstance(base_dir, str | os.PathLike):
        raise env.ConfigError(
            f"runtime.databases() takes the project's directory (BASE_DIR, a str or a Path) "
            f"first; it was given {_described(base_dir)}."
        )
    if default is not None and not _is_databases(default):
        raise env.ConfigError(
            "runtime.databases(default=...) takes the settings' own DATABASES (a dict of "
            f"database settings by alias); it was given {_described(default)}."
        )
    snapshot = env.snapshot()
    found = validation.problems(snapshot)
    if default is not None:
        found += database.own_databases_problems(snapshot)
    if found:
        raise env.ConfigError(*found)
    return database.databases(Path(base_dir), snapshot, default)


def _is_databases(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(alias, str) and isinstance(settings, Mapping)
        for alias, settings in value.items()
    )


def _described(value: object) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 60 else shown[:57] + '...'}"


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


def middleware(middleware: Sequence[str]) -> list[str]:
    """The project's ``MIDDLEWARE`` (a list or a tuple) with the runtime's first: it
    records the URL pattern for the metrics' ``route`` label
    (``/api/items/<int:pk>``, never the raw path)."""
    if isinstance(middleware, str) or not isinstance(middleware, Sequence):
        raise env.ConfigError(
            "runtime.middleware() takes the settings' MIDDLEWARE (a list of dotted paths); "
            f"it was given {_described(middleware)}."
        )
    return [RECORD_ROUTE, *(name for name in middleware if name != RECORD_ROUTE)]


def logging() -> dict[str, Any]:
    """``LOGGING``: one format for Gunicorn, the workers, the access log and Django
    (``LOG_FORMAT``, ``LOG_LEVEL``, ``GUNICORN_LOG_LEVEL``), each line with the
    request id of the request it belongs to.

    Assign it last: a ``LOGGING`` set after it (a ``production.py`` over a
    ``base.py``) is warned about at start-up, by ``check-env`` and by Django's
    system checks (``manage.py check``, ``migrate``)."""
    snapshot = checked()
    validation.warning(logging_replaced)
    _register_the_system_check()
    return logconfig.logging_config(
        log_format=snapshot.LOG_FORMAT,
        level=snapshot.LOG_LEVEL,
        server_level=snapshot.GUNICORN_LOG_LEVEL,
    )


RUNTIME_HANDLER = "django_k8s_runtime.observability.logconfig.ConsoleHandler"


def logging_replaced(snapshot: env.Snapshot | None = None) -> list[str]:
    """One line if the project's final ``LOGGING`` (Django's, or its settings
    module's when Django is not set up yet) no longer has the runtime's handler,
    after :func:`logging` was called: a later assignment replaced it."""
    configured, module = _final_logging()
    if not isinstance(configured, Mapping):
        return []
    handlers = configured.get("handlers")
    if isinstance(handlers, Mapping) and any(
        isinstance(handler, Mapping) and handler.get("class") == RUNTIME_HANDLER
        for handler in handlers.values()
    ):
        return []
    return [
        f"LOGGING in {module} replaces the one runtime.logging() gave: lines are not the "
        "runtime's (LOG_FORMAT, request ids, the access log's handler); assign "
        "LOGGING = runtime.logging() after it, in the module that sets LOGGING last, or add "
        "your loggers to runtime.logging()'s dict."
    ]


def _final_logging() -> tuple[Any, str]:
    from django.conf import settings

    if settings.configured:
        return getattr(settings, "LOGGING", None), str(settings.SETTINGS_MODULE)
    name = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    return getattr(sys.modules.get(name), "LOGGING", None), name


_system_check_registered = False


def _register_the_system_check() -> None:
    global _system_check_registered
    if _system_check_registered:
        return
    from django.core import checks

    def logging_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
        return [checks.Warning(line, id="django_k8s_runtime.W001") for line in logging_replaced()]

    checks.register(logging_check)
    _system_check_registered = True
