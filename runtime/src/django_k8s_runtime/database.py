"""Django's DATABASES, from DATABASE_URL and the DB_* variables.

The URL is parsed by dj-database-url; the explicit ``DB_SSL*`` variables then
override its query string. We never use the parser's ``ssl_require`` helper: it
writes ``sslmode=require`` over whatever the URL said, silently downgrading a
``verify-full`` to an unauthenticated connection.

Everything libpq would only complain about on the first request (a missing CA
file, a key file it refuses to read, an unknown ``sslmode``) is a start-up
problem here (:func:`database_problems`, one line each, all of them at once, gathered
by :mod:`.validation`); :func:`databases` then builds from a snapshot
that has passed them.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dj_database_url

from django_k8s_runtime.env import DEFAULT, SSL_MODES, ConfigError, Snapshot
from django_k8s_runtime.masking import redact_url

VERIFYING_MODES = ("verify-ca", "verify-full")
POSTGRES_ENGINE = "django.db.backends.postgresql"
SQLITE_ENGINE = "django.db.backends.sqlite3"
TLS_VARIABLES = {"DB_SSLROOTCERT": "sslrootcert", "DB_SSLCERT": "sslcert", "DB_SSLKEY": "sslkey"}


def databases(
    base_dir: Path, snapshot: Snapshot, own: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``DATABASES``: the default database from DATABASE_URL, beside the other
    databases of ``own`` (the settings' own ``DATABASES``), if given; ``own`` as it
    is when DATABASE_URL is not set."""
    if own is None:
        return {"default": default_database(base_dir, snapshot)}
    if snapshot.source("DATABASE_URL") == DEFAULT:
        return dict(own)
    return {**own, "default": default_database(base_dir, snapshot)}


# What shapes DATABASE_URL's database, and would have no effect on a project's own.
URL_VARIABLES = (
    "DB_SSLMODE",
    *TLS_VARIABLES,
    "DB_CONNECT_TIMEOUT",
    "DB_POOL",
    "DB_POOL_MIN_SIZE",
    "DB_POOL_MAX_SIZE",
    "DB_POOL_TIMEOUT",
)


def own_databases_problems(snapshot: Snapshot) -> list[str]:
    """With the settings' own DATABASES kept (DATABASE_URL not set), a DB_* variable
    that shapes DATABASE_URL's database would have no effect: one line each."""
    if snapshot.source("DATABASE_URL") != DEFAULT:
        return []
    return [
        f"{name} is set but DATABASE_URL is not: the settings' own DATABASES are used as they "
        f"are, and {name} applies to DATABASE_URL's database only; set DATABASE_URL, or "
        f"remove {name}."
        for name in URL_VARIABLES
        if snapshot.source(name) != DEFAULT
    ]


def default_database(base_dir: Path, snapshot: Snapshot) -> dict[str, Any]:
    """The default database, from a snapshot whose :func:`problems` are none."""
    config: dict[str, Any] = dict(dj_database_url.parse(snapshot.DATABASE_URL))
    if config["ENGINE"] == SQLITE_ENGINE:
        name = config.get("NAME") or ""
        if name and name != ":memory:" and not os.path.isabs(name):
            config["NAME"] = str(base_dir / name)
        return config

    options = config.setdefault("OPTIONS", {})
    options.update({key: value for key, (value, _) in _tls_settings(options, snapshot).items()})
    options.setdefault("connect_timeout", snapshot.DB_CONNECT_TIMEOUT)
    if snapshot.DB_POOL:
        options["pool"] = {
            "min_size": snapshot.DB_POOL_MIN_SIZE,
            "max_size": snapshot.DB_POOL_MAX_SIZE,
            "timeout": snapshot.DB_POOL_TIMEOUT,
        }
    # Under ASGI, Django's persistent connections are the wrong tool (each request
    # runs in its own thread); the pool keeps connections instead.
    config["CONN_MAX_AGE"] = 0
    config["CONN_HEALTH_CHECKS"] = True
    if snapshot.DB_POOLER == PGBOUNCER:
        # A WITH HOLD cursor (QuerySet.iterator()) lives in the server session it was
        # declared in; in transaction mode the next FETCH may be lent another one.
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
    return config


REQUEST_BOUNDS = ("statement_timeout", "idle_in_transaction_session_timeout")
PGBOUNCER = "pgbouncer"


def bound_by_request(databases: dict[str, Any], seconds: float) -> None:
    """In the server: no PostgreSQL statement, and no transaction left idle, outlives
    a request's timeout (``DB_REQUEST_TIMEOUTS``).

    The handler cancels the statement of a view answered 504 at once; these bound
    what it cannot reach: a statement begun after the 504, a transaction a view
    left open while it waits on something else. Sent as libpq ``options`` when each
    connection is made, so they cost nothing per request; a value the project set
    in its own ``options`` is kept. Management commands (migrations) never get them:
    only the server calls this."""
    milliseconds = int(seconds * 1000)
    for config in databases.values():
        if not config.get("ENGINE", "").endswith("postgresql"):
            continue
        options = config.setdefault("OPTIONS", {})
        given = options.get("options") or ""
        added = [f"-c {name}={milliseconds}" for name in REQUEST_BOUNDS if name not in given]
        options["options"] = " ".join([given, *added]).strip()


# The server's threads and their connections ------------------------------------
#
# The server hands these to its thread pools and its request path (asgi.py): no
# thread it owns keeps a connection between jobs, and a request past its deadline
# has its statement cancelled. Django keeps one connection per alias and thread.

_this_thread = threading.local()
CANCEL_SECONDS = 5.0


def thread_connections() -> list[Any]:
    """This thread's Django connections, one per alias (found once per thread)."""
    try:
        found: list[Any] = _this_thread.connections
    except AttributeError:
        from django.db import connections

        found = _this_thread.connections = [connections[alias] for alias in connections]
    return found


def give_back_connections() -> None:
    """After every job of the server's threads: a connection the job left open is
    dealt with as at the end of a request (Django's ``close_old_connections``):
    a pooled one goes back to its pool; only one Django means to keep
    (``CONN_MAX_AGE``) stays. A request's own ``request_finished`` has done this
    already; this catches every other job (a project's readiness check, the end of
    a stream) and a receiver that was disconnected."""
    for connection in thread_connections():
        if connection.connection is not None and not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def cancel_running_query(connection: Any) -> bool:
    """Cancel the statement a Django connection is running, from another thread."""
    raw = connection.connection
    if raw is None:
        return False
    if connection.vendor == "postgresql":
        from psycopg import pq

        if raw.info.transaction_status != pq.TransactionStatus.ACTIVE:
            return False
        raw.cancel_safe(timeout=CANCEL_SECONDS)
        return True
    if connection.vendor == "sqlite":
        raw.interrupt()
        return True
    return False


def pool_stats() -> dict[str, dict[str, int]]:
    """psycopg_pool's statistics (``get_stats()``) of each connection pool this
    process has opened, by database alias; none before the first request opens one.

    Django keeps its pools in ``DatabaseWrapper._connection_pools`` (private; pinned
    with Django, this module's tests check it); its public ``pool``
    property would open a pool only to read it."""
    from django.conf import settings

    if not any(c.get("ENGINE") == POSTGRES_ENGINE for c in settings.DATABASES.values()):
        return {}
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools = list(DatabaseWrapper._connection_pools.items())  # type: ignore[attr-defined]
    return {alias: pool.get_stats() for alias, pool in pools}


def database_problems(snapshot: Snapshot) -> list[str]:
    """Every problem with DATABASE_URL and the DB_* variables, one line each."""
    found = []
    if snapshot.DB_POOL_MIN_SIZE > snapshot.DB_POOL_MAX_SIZE:
        found.append(
            f"DB_POOL_MIN_SIZE={snapshot.DB_POOL_MIN_SIZE} is larger than "
            f"DB_POOL_MAX_SIZE={snapshot.DB_POOL_MAX_SIZE}."
        )
    url = snapshot.DATABASE_URL
    try:
        config = dj_database_url.parse(url)
    except Exception:  # the parser raises several types for malformed URLs
        return [
            *found,
            f"DATABASE_URL={redact_url(url)!r} is not valid: expected a URL such as "
            "postgres://user:password@host:5432/name or sqlite:///path/to/file.",
        ]
    if config["ENGINE"] == SQLITE_ENGINE:
        found += [
            f"{name} is set but DATABASE_URL is not a PostgreSQL URL; "
            "TLS settings apply to postgres:// only."
            for name in ("DB_SSLMODE", *TLS_VARIABLES)
            if snapshot[name]
        ]
        if snapshot.DB_POOLER != "none":
            found.append(
                f"DB_POOLER={snapshot.DB_POOLER} has no effect: DATABASE_URL is not a "
                "PostgreSQL URL; remove DB_POOLER."
            )
        return found
    if config["ENGINE"] != POSTGRES_ENGINE:
        return [
            *found,
            f"DATABASE_URL={redact_url(url)!r} is not valid: this service supports "
            "postgres:// (and sqlite:// for local use).",
        ]
    if not config.get("NAME"):
        found.append(
            f"DATABASE_URL={redact_url(url)!r} is not valid: it names no database "
            "(postgres://user:password@host:5432/NAME)."
        )
    return (
        found
        + list(_tls_problems(config.get("OPTIONS", {}), snapshot))
        + _pooler_problems(snapshot)
    )


def _pooler_problems(snapshot: Snapshot) -> list[str]:
    """PgBouncer refuses a startup parameter it cannot keep per client, ``options``
    among them (later versions accept in it only what they track, and PostgreSQL
    does not report ``statement_timeout`` back to be tracked); told to ignore it, it
    drops the bounds without a word."""
    if snapshot.DB_POOLER != PGBOUNCER or not snapshot.DB_REQUEST_TIMEOUTS:
        return []
    from django_k8s_runtime.command_line import gunicorn_value

    try:
        timeout = gunicorn_value(snapshot, "GUNICORN_TIMEOUT")
    except ConfigError:  # GUNICORN_CMD_ARGS's --timeout is not valid: its own line says so
        timeout = snapshot.GUNICORN_TIMEOUT
    milliseconds = int(timeout * 1000)
    default = " (the default)" if snapshot.source("DB_REQUEST_TIMEOUTS") == DEFAULT else ""
    settings = "; ".join(f"SET {name} = {milliseconds}" for name in REQUEST_BOUNDS)
    return [
        f"DB_REQUEST_TIMEOUTS=true{default} cannot work with DB_POOLER=pgbouncer: PgBouncer "
        "refuses the session options it sends (and ignore_startup_parameters = options "
        "would drop them unsaid); set DB_REQUEST_TIMEOUTS=false and give PgBouncer's "
        f"database entry connect_query='{settings}' (the documentation's Database page)."
    ]


def _tls_settings(options: dict[str, Any], snapshot: Snapshot) -> dict[str, tuple[str, str]]:
    """The URL's ssl* parameters with the DB_SSL* variables laid over them:
    libpq key -> (value, where it was set, for messages)."""
    settings = {}
    if snapshot.DB_SSLMODE:
        settings["sslmode"] = (snapshot.DB_SSLMODE, "DB_SSLMODE")
    elif options.get("sslmode"):
        settings["sslmode"] = (options["sslmode"], "DATABASE_URL's sslmode")
    for name, key in TLS_VARIABLES.items():
        if snapshot[name]:
            settings[key] = (snapshot[name], name)
        elif options.get(key):
            settings[key] = (options[key], f"DATABASE_URL's {key}")
    return settings


def _tls_problems(options: dict[str, Any], snapshot: Snapshot) -> Iterator[str]:
    settings = _tls_settings(options, snapshot)
    sslmode, source = settings.get("sslmode", ("", ""))
    if sslmode and sslmode not in SSL_MODES:
        yield f"{source}={sslmode!r} is not valid: expected one of {', '.join(SSL_MODES)}."
    for key in TLS_VARIABLES.values():
        if key not in settings:
            continue
        path, name = settings[key]
        if key == "sslrootcert" and path == "system":
            yield from _libpq_for_system_roots(name)
            continue
        unreadable = _unreadable(name, path)
        if unreadable:
            yield unreadable
        elif key == "sslkey":
            yield from _private_key_permissions(name, path)

    if sslmode in VERIFYING_MODES and "sslrootcert" not in settings:
        default_root = Path.home() / ".postgresql" / "root.crt"
        if not default_root.is_file():
            yield (
                f"{source}={sslmode} needs the certificate authority: set DB_SSLROOTCERT to "
                "the CA file that signed the server's certificate (or 'system')."
            )
    if sslmode == "disable" and settings.keys() & {"sslrootcert", "sslcert", "sslkey"}:
        yield (
            "DB_SSLMODE=disable contradicts the certificate settings given "
            "(DB_SSLROOTCERT/DB_SSLCERT/DB_SSLKEY); remove one or the other."
        )
    if ("sslcert" in settings) != ("sslkey" in settings):
        yield "DB_SSLCERT and DB_SSLKEY go together: set both or neither."


def _unreadable(name: str, path: str) -> str | None:
    if not os.path.isfile(path):
        return f"{name}={path!r} is not valid: no such file."
    if not os.access(path, os.R_OK):
        return f"{name}={path!r} is not valid: the file is not readable by this user."
    return None


def _private_key_permissions(name: str, path: str) -> Iterator[str]:
    """libpq refuses a key that others can read; say so now, not on the first request."""
    info = os.stat(path)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == 0 and os.geteuid() != 0:
        allowed_mask, allowed = 0o137, "0640 or stricter (root-owned)"
    else:
        allowed_mask, allowed = 0o077, "0600 or stricter"
    if mode & allowed_mask:
        yield (
            f"{name}={path!r} is not valid: its permissions are {mode:04o} and libpq "
            f"refuses a private key others can read; expected {allowed}."
        )


def _libpq_for_system_roots(name: str) -> Iterator[str]:
    import psycopg

    if psycopg.pq.version() < 160000:
        yield (
            f"{name}='system' is not valid: it needs libpq 16 or newer, this one is "
            f"{psycopg.pq.version()}; give a CA file instead."
        )
