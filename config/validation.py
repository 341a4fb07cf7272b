"""Every start-up rule, run together: each problem one line, all of them at once.

A value that does not parse is a problem of the snapshot itself
(:attr:`config.env.Snapshot.problems`). Each concern then adds the rules it
owns, as a function from the snapshot to a list of lines: the database's URL
and TLS files (``config/database.py``), and below the rules between variables
(recycling, the secret key, metrics, the health checks). :func:`check` runs
them all, so an operator fixes every mistake in one go, as CONSTITUTION.md
promises, and nothing is found later, one at a time.

A rule that needs a value which did not parse is skipped: that value's own line
is already in the list.
"""

from __future__ import annotations

from collections.abc import Callable

from config import database
from config.env import ConfigError, Snapshot


def recycling_problems(env: Snapshot) -> list[str]:
    if env.GUNICORN_MAX_REQUESTS_JITTER and not env.GUNICORN_MAX_REQUESTS:
        return [
            f"GUNICORN_MAX_REQUESTS_JITTER={env.GUNICORN_MAX_REQUESTS_JITTER} has no effect "
            "because GUNICORN_MAX_REQUESTS=0 (never recycle); set GUNICORN_MAX_REQUESTS or "
            "remove the jitter."
        ]
    return []


def secret_key_problems(env: Snapshot) -> list[str]:
    if env.DJANGO_SECRET_KEY is None and not env.DJANGO_DEBUG:
        return [
            "DJANGO_SECRET_KEY is not set; production needs one (at least 50 random "
            "characters), e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
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
    if not env.METRICS_PORT and env.PROMETHEUS_MULTIPROC_DIR:
        found.append(
            f"PROMETHEUS_MULTIPROC_DIR={env.PROMETHEUS_MULTIPROC_DIR!r} has no effect because "
            "METRICS_PORT=0 (metrics off); set METRICS_PORT or remove PROMETHEUS_MULTIPROC_DIR."
        )
    return found


def health_problems(env: Snapshot) -> list[str]:
    if "cache" in env.HEALTH_CHECKS and not env.CACHE_URL:
        return [
            "HEALTH_CHECKS includes cache but CACHE_URL is empty: there is no cache server "
            "to check; set CACHE_URL or remove cache from HEALTH_CHECKS."
        ]
    return []


RULES: tuple[Callable[[Snapshot], list[str]], ...] = (
    recycling_problems,
    secret_key_problems,
    database.problems,
    health_problems,
    metrics_problems,
)


def problems(env: Snapshot) -> list[str]:
    """Every problem with this configuration, one line each, in a stable order."""
    found = list(env.problems)
    for rule in RULES:
        try:
            found += rule(env)
        except ConfigError:
            continue  # the rule reads a value that did not parse; its line is listed
    return found


def check(env: Snapshot) -> None:
    """Stop with every problem, one ``configuration error:`` line each, or return."""
    found = problems(env)
    if found:
        raise ConfigError(*found)
