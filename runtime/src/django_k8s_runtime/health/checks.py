"""Readiness checks: is each dependency this process needs reachable right now?

Each check runs under a hard time bound, and a result is reused for a short
while, so a hung database makes the probe answer 503 quickly rather than hang,
and a burst of probes costs one round trip, not one each. Concurrent probes
share the check already in flight.

The channel layer (``channel_layer``: Channels' CHANNEL_LAYERS, Redis with
channels-redis) is checked on the event loop too, with the layer's own connections.

PostgreSQL is checked on the event loop with psycopg's async connection, built
from the very parameters Django uses (sslmode, certificates, timeouts), so a
TLS or authentication problem shows up here as it would for a request. No thread
is involved: a busy thread pool cannot delay the answer, and a hung connection
attempt is simply cancelled.

A project adds its own checks to ``HEALTH_CHECKS`` as ``package.module:callable``
(:func:`project_probe`): a function of no arguments that raises, or returns
``False``, when its dependency is down. It gets the same time bound, cache, single
flight and log lines. An ``async def`` one runs on the event loop; a plain one in a
thread, at most one thread per check at a time: a check that hangs is answered for
at ``HEALTH_CHECK_TIMEOUT`` and not started again until its thread returns, so a
hung dependency cannot pile threads up.

Failure details never leave the process: the response says only which check
failed; the log says why, once when a check starts failing and once when it
recovers.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


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


def channel_layer_probe(alias: str) -> Callable[[], Awaitable[None]]:
    """The channel layer ``alias`` of CHANNEL_LAYERS answers: each Redis of a
    channels-redis layer a PING, any other layer a ``group_discard`` of a channel
    that is in no group (nothing is written)."""

    async def probe() -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer(alias)
        layer = getattr(layer, "layer", layer)  # the project's own, not the runtime's guard
        if hasattr(layer, "connection") and hasattr(layer, "ring_size"):  # channels-redis
            for index in range(layer.ring_size):
                await layer.connection(index).ping()
            return
        await layer.group_discard("django-k8s-runtime.health", "django-k8s-runtime.health")

    return probe


def channel_layers() -> list[str]:
    """The aliases of the project's CHANNEL_LAYERS; CannotLoadCheck when there is none
    or Channels is not installed (the check would have nothing to check)."""
    from django.conf import settings

    try:
        import channels.layers  # noqa: F401
    except ImportError:
        raise CannotLoadCheck(
            "Channels is not installed (the runtime's websockets extra)"
        ) from None
    aliases = list(getattr(settings, "CHANNEL_LAYERS", None) or {})
    if not aliases:
        raise CannotLoadCheck("the project's settings have no CHANNEL_LAYERS")
    return aliases


# A project's own checks ------------------------------------------------------------

RunInThread = Callable[[Callable[[], Any]], Awaitable[Any]]


class CheckFailed(Exception):
    """A project's check returned False."""


class CannotLoadCheck(Exception):
    """A ``package.module:callable`` entry that does not name a callable."""


class CannotLoadChecks(Exception):
    """Every such entry of HEALTH_CHECKS, one line each (the composition root turns
    them into configuration errors)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_callable(reference: str) -> Callable[[], Any]:
    """The callable ``package.module:name`` names (``name`` may be dotted)."""
    module_name, _, attributes = reference.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:  # an import error, or anything the module raised
        raise CannotLoadCheck(f"its module cannot be imported: {_describe(error)}") from None
    for attribute in attributes.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise CannotLoadCheck(f"{module_name} has no {attributes}") from None
    if not callable(found):
        raise CannotLoadCheck(f"{attributes} is a {type(found).__name__}, not a callable")
    check: Callable[[], Any] = found
    return check


def project_probe(
    function: Callable[[], Any], run_in_thread: RunInThread | None = None
) -> Callable[[], Awaitable[None]]:
    """A probe around a project's check: awaited on the loop if it is ``async def``,
    else run by ``run_in_thread`` (the worker's background pool; Python's default
    executor without one), one thread at a time."""
    if _is_async(function):

        async def probe_async() -> None:
            if await function() is False:
                raise CheckFailed("returned False")

        return probe_async

    run = run_in_thread or _default_executor
    running: asyncio.Future[Any] | None = None

    async def probe() -> None:
        nonlocal running
        if running is None or running.done():
            running = asyncio.ensure_future(run(functools.partial(_call_then_close, function)))
            running.add_done_callback(_retrieve)
        if await asyncio.shield(running) is False:
            raise CheckFailed("returned False")

    return probe


def _is_async(function: Callable[[], Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _call_then_close(function: Callable[[], Any]) -> Any:
    """In the check's thread: the check, then the Django connections it may have
    opened in this thread go back (as at the end of a request)."""
    from django.db import close_old_connections

    try:
        return function()
    finally:
        close_old_connections()


async def _default_executor(function: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, function)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A thread that outlived every probe waiting for it still has its outcome read."""
    if not future.cancelled():
        future.exception()


def configured_checks(
    names: tuple[str, ...],
    *,
    timeout: float,
    cache_seconds: float,
    run_in_thread: RunInThread | None = None,
) -> list[Check]:
    """The checks HEALTH_CHECKS asks for: ``database`` is every configured database,
    ``channel_layer`` every layer of CHANNEL_LAYERS, ``package.module:callable`` a
    project's own; CannotLoadChecks names every entry
    that does not name a callable."""
    from django.conf import settings

    checks = []
    problems = []
    for name in names:
        if name == "database":
            checks += [
                Check(
                    f"database:{alias}",
                    database_probe(alias),
                    timeout=timeout,
                    cache_seconds=cache_seconds,
                )
                for alias in settings.DATABASES
            ]
        elif name == "cache":
            checks.append(
                Check("cache", cache_probe(), timeout=timeout, cache_seconds=cache_seconds)
            )
        elif name == "channel_layer":
            try:
                aliases = channel_layers()
            except CannotLoadCheck as error:
                problems.append(f"HEALTH_CHECKS entry {name!r} is not valid: {error}.")
                continue
            checks += [
                Check(
                    f"channel_layer:{alias}",
                    channel_layer_probe(alias),
                    timeout=timeout,
                    cache_seconds=cache_seconds,
                )
                for alias in aliases
            ]
        else:
            try:
                function = load_callable(name)
            except CannotLoadCheck as error:
                problems.append(f"HEALTH_CHECKS entry {name!r} is not valid: {error}.")
                continue
            probe = project_probe(function, run_in_thread)
            checks.append(Check(name, probe, timeout=timeout, cache_seconds=cache_seconds))
    if problems:
        raise CannotLoadChecks(problems)
    return checks
