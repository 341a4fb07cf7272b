"""Readiness checks: is each dependency this process needs reachable right now?

Each check runs under a hard time bound, and a result is reused for a short
while, so a hung database makes the probe answer 503 quickly rather than hang,
and a burst of probes costs one round trip, not one each. Concurrent probes
share the check already in flight.

PostgreSQL is checked on the event loop with psycopg's async connection, built
from the very parameters Django uses (sslmode, certificates, timeouts), so a
TLS or authentication problem shows up here as it would for a request. No thread
is involved: a busy thread pool cannot delay the answer, and a hung connection
attempt is simply cancelled.

Failure details never leave the process: the response says only which check
failed; the log says why, once when a check starts failing and once when it
recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger("health")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    duration_ms: float


class Check:
    """One named dependency check with a time bound, a result cache and single flight."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        *,
        timeout: float,
        cache_seconds: float,
    ) -> None:
        self.name = name
        self._probe = probe
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, CheckResult] | None = None
        self._in_flight: asyncio.Future[CheckResult] | None = None
        self._last_ok: bool | None = None

    async def run(self) -> CheckResult:
        now = time.monotonic()
        if self._cached and now - self._cached[0] < self._cache_seconds:
            return self._cached[1]
        if self._in_flight is None or self._in_flight.done():
            self._in_flight = asyncio.ensure_future(self._measure())
        try:
            return await asyncio.wait_for(asyncio.shield(self._in_flight), self._timeout)
        except TimeoutError:
            # The shared attempt keeps going; this probe answers now.
            result = CheckResult(self.name, False, self._timeout * 1000)
            self._note(False, f"no answer within {self._timeout:g}s (HEALTH_CHECK_TIMEOUT)")
            return result

    async def _measure(self) -> CheckResult:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._probe(), self._timeout * 4)
            ok, reason = True, ""
        except Exception as error:  # every failure means "not ready"; the log says why
            ok, reason = False, _describe(error)
        result = CheckResult(self.name, ok, (time.perf_counter() - started) * 1000)
        self._cached = (time.monotonic(), result)
        self._note(ok, reason)
        return result

    def _note(self, ok: bool, reason: str) -> None:
        if ok == self._last_ok:
            return
        self._last_ok = ok
        if ok:
            logger.info("readiness check %s passes", self.name)
        else:
            logger.warning("readiness check %s fails: %s", self.name, reason)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    message = " ".join(str(error).split())  # one line, whatever libpq sent
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# Probes for the dependencies Django is configured with ------------------------


def database_probe(alias: str) -> Callable[[], Awaitable[None]]:
    from django.db import connections

    connection = connections[alias]
    if connection.vendor == "postgresql":
        return _postgres_probe(alias)

    async def probe() -> None:
        from asgiref.sync import sync_to_async

        def select_one() -> None:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            connections[alias].close()

        await sync_to_async(select_one, thread_sensitive=False)()

    return probe


def _postgres_probe(alias: str) -> Callable[[], Awaitable[None]]:
    async def probe() -> None:
        import psycopg
        from django.db import connections

        params = connections[alias].get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(django_only, None)
        connection = await psycopg.AsyncConnection.connect(autocommit=True, **params)
        try:
            await connection.execute("SELECT 1")
        finally:
            await connection.close()

    return probe


def cache_probe() -> Callable[[], Awaitable[None]]:
    async def probe() -> None:
        from django.core.cache import cache

        await cache.aset("health:probe", "1", timeout=10)
        if await cache.aget("health:probe") != "1":
            raise RuntimeError("cache did not return what was stored")

    return probe


def configured_checks(
    names: tuple[str, ...], *, timeout: float, cache_seconds: float
) -> list[Check]:
    """The checks HEALTH_CHECKS asks for: ``database`` is every configured database."""
    from django.conf import settings

    checks = []
    if "database" in names:
        checks += [
            Check(
                f"database:{alias}",
                database_probe(alias),
                timeout=timeout,
                cache_seconds=cache_seconds,
            )
            for alias in settings.DATABASES
        ]
    if "cache" in names:
        checks.append(Check("cache", cache_probe(), timeout=timeout, cache_seconds=cache_seconds))
    return checks
