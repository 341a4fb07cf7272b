"""Every start-up rule, run together: each problem one line, all of them at once.

A value that does not parse is a problem of the snapshot itself
(:attr:`config.env.Snapshot.problems`). Each concern then adds the rules it
owns, as a function from the snapshot to a list of lines: the database's URL
and TLS files (:mod:`.database`), and below the rules between variables (recycling,
metrics, the health checks, WebSocket pings); a project adds its own with
:func:`rule`. :func:`check` runs them all, so an operator fixes every mistake in
one go, as CONSTITUTION.md promises, and nothing is found later, one at a time.

A rule that needs a value which did not parse is skipped: that value's own line
is already in the list.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from django_k8s_runtime import database
from django_k8s_runtime.env import DEFAULT, ConfigError, Snapshot


def recycling_problems(env: Snapshot) -> list[str]:
    if env.GUNICORN_MAX_REQUESTS_JITTER and not env.GUNICORN_MAX_REQUESTS:
        return [
            f"GUNICORN_MAX_REQUESTS_JITTER={env.GUNICORN_MAX_REQUESTS_JITTER} has no effect "
            "because GUNICORN_MAX_REQUESTS=0 (never recycle); set GUNICORN_MAX_REQUESTS or "
            "remove the jitter."
        ]
    return []


def metrics_problems(env: Snapshot) -> list[str]:
    """Metrics are on exactly when METRICS_PORT is not 0; nothing else decides it."""
    found = []
    if env.METRICS_PORT == env.GUNICORN_PORT:
        found.append(
            f"METRICS_PORT={env.METRICS_PORT} is the same as GUNICORN_PORT: "
            "metrics must not be served on the public port."
        )
    directory = env.PROMETHEUS_MULTIPROC_DIR
    if directory and os.path.exists(directory) and not os.path.isdir(directory):
        found.append(
            f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not valid: it exists and is not a "
            "directory; name a directory (on a tmpfs), or leave it empty for a fresh one."
        )
    elif directory and os.path.isdir(directory) and _foreign_files(directory):
        found.append(
            f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not valid: it holds files other than "
            f"metrics ({', '.join(_foreign_files(directory)[:3])}), and it is emptied at "
            "start; name an empty directory of its own."
        )
    elif directory and not os.access(_nearest_existing(directory), os.W_OK | os.X_OK):
        found.append(
            f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not valid: this user cannot write "
            "to it; name a writable directory, or leave it empty for a fresh one."
        )
    if not env.METRICS_PORT and env.PROMETHEUS_MULTIPROC_DIR:
        found.append(
            f"PROMETHEUS_MULTIPROC_DIR={env.PROMETHEUS_MULTIPROC_DIR!r} has no effect because "
            "METRICS_PORT=0 (metrics off); set METRICS_PORT or remove PROMETHEUS_MULTIPROC_DIR."
        )
    return found


def _foreign_files(directory: str) -> list[str]:
    """Entries that prometheus_client did not write (it writes ``*.db`` files)."""
    try:
        return sorted(name for name in os.listdir(directory) if not name.endswith(".db"))
    except OSError as error:
        return [f"<unreadable: {error.strerror}>"]


def _nearest_existing(path: str) -> str:
    """``path`` or the closest ancestor of it that exists (what mkdir would write to)."""
    while not os.path.exists(path):
        path = os.path.dirname(path.rstrip("/")) or "/"
    return path


def health_problems(env: Snapshot) -> list[str]:
    if "cache" in env.HEALTH_CHECKS and not env.CACHE_URL:
        return [
            "HEALTH_CHECKS includes cache but CACHE_URL is empty: there is no cache server "
            "to check; set CACHE_URL or remove cache from HEALTH_CHECKS."
        ]
    return []


def websocket_problems(env: Snapshot) -> list[str]:
    if not env.WEBSOCKET_PING_INTERVAL and env.source("WEBSOCKET_PING_TIMEOUT") != DEFAULT:
        return [
            f"WEBSOCKET_PING_TIMEOUT={env.WEBSOCKET_PING_TIMEOUT:g} has no effect because "
            "WEBSOCKET_PING_INTERVAL=0 (no pings); set WEBSOCKET_PING_INTERVAL or remove the "
            "timeout."
        ]
    return []


Rule = Callable[[Snapshot], list[str]]
RULES: list[Rule] = [
    recycling_problems,
    database.problems,
    health_problems,
    metrics_problems,
    websocket_problems,
]


def rule(function: Rule) -> Rule:
    """Add a project's own rule (a function from the snapshot to problem lines), run
    with the runtime's by :func:`check`; usable as a decorator."""
    if function not in RULES:
        RULES.append(function)
    return function


def problems(env: Snapshot) -> list[str]:
    """Every problem with this configuration, one line each, in a stable order."""
    found = list(env.problems)
    for each in RULES:
        try:
            found += each(env)
        except ConfigError:
            continue  # the rule reads a value that did not parse; its line is listed
    return found


def check(env: Snapshot) -> None:
    """Stop with every problem, one ``configuration error:`` line each, or return."""
    found = problems(env)
    if found:
        raise ConfigError(*found)


def warnings(env: Snapshot, *, timeout: int, graceful_timeout: int, threads: int) -> list[str]:
    """Legal but unwise: one line each, logged at start-up. Gunicorn's effective
    values are passed in, as ``GUNICORN_CMD_ARGS`` may have changed them."""
    found = []
    if graceful_timeout < timeout:
        found.append(
            f"GUNICORN_GRACEFUL_TIMEOUT={graceful_timeout} is shorter than GUNICORN_TIMEOUT="
            f"{timeout}: a request that may run {timeout}s is cancelled after {graceful_timeout}s "
            "when its worker stops (deploys, recycling); make the graceful timeout at least "
            "the timeout."
        )
    pooled = env.DB_POOL and env.DATABASE_URL.startswith(("postgres://", "postgresql://"))
    if pooled and threads > env.DB_POOL_MAX_SIZE:
        found.append(
            f"GUNICORN_THREADS={threads} is more than DB_POOL_MAX_SIZE={env.DB_POOL_MAX_SIZE}: "
            "synchronous views that need the database can wait up to DB_POOL_TIMEOUT for a "
            "connection; fine if many views never touch it."
        )
    return found
