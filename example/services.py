"""Business logic, kept out of views (HackSoft's Django styleguide): views parse
and render; this module decides."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.request
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from django.conf import settings

from example.models import Item

LATEST_LIMIT = 10
UPSTREAM_TIMEOUT_SECONDS = 5.0


def latest_items(limit: int = LATEST_LIMIT) -> list[dict[str, Any]]:
    return [
        {"id": item.id, "name": item.name, "created": item.created.isoformat()}
        for item in Item.objects.all()[:limit]
    ]


def greeting(name: str | None) -> dict[str, str]:
    return {"message": f"Hello, {name or 'world'}!"}


class UpstreamUnavailable(Exception):
    """The upstream service is not configured, did not answer, or answered an error."""


async def upstream_quote() -> dict[str, Any]:
    """Ask the upstream service, waiting on the event loop: no thread is held."""
    try:
        async with _session() as session, session.get(_upstream_url()) as response:
            response.raise_for_status()
            return {"upstream": await response.json()}
    except (aiohttp.ClientError, TimeoutError) as error:
        raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


def upstream_quote_sync() -> dict[str, Any]:
    """The same call made synchronously: the thread waits for the answer."""
    url = _upstream_url()  # http(s) only: config/env.py checks the scheme
    try:
        with urllib.request.urlopen(url, timeout=UPSTREAM_TIMEOUT_SECONDS) as response:  # noqa: S310
            return {"upstream": json.load(response)}
    except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, bad JSON
        raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


def _upstream_url() -> str:
    if not settings.EXAMPLE_UPSTREAM_URL:
        raise UpstreamUnavailable("EXAMPLE_UPSTREAM_URL is not set")
    return settings.EXAMPLE_UPSTREAM_URL


# An aiohttp session keeps connections to the upstream open between requests. It
# belongs to one event loop: a server's, which runs in the process's main thread
# for the process's life, gets one session for good. Under a WSGI server an async
# view runs in a fresh event loop in another thread, for one request: it gets a
# session of its own, closed with the request. aiohttp rather than httpx: measured
# here at 10-100 concurrent calls, httpx's async client used 1,100-7,500 µs of CPU
# per call, aiohttp 110-190.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    if threading.current_thread() is not threading.main_thread():
        async with _new_session() as session:  # a loop for this request only
            yield session
        return
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = _sessions[loop] = _new_session()
    yield session


def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000),
        timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_SECONDS),
    )
