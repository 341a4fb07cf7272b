"""Views that misbehave on purpose, so tests can watch the server cope."""

import asyncio
import os
import time

from django.db import connection
from django.http import HttpRequest, JsonResponse


def _seconds(request: HttpRequest) -> float:
    return float(request.GET.get("s", "1"))


def sync_sleep(request: HttpRequest) -> JsonResponse:
    """A slow synchronous view: occupies one thread."""
    time.sleep(_seconds(request))
    return JsonResponse({"slept": _seconds(request), "pid": os.getpid()})


async def async_sleep(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(_seconds(request))
    return JsonResponse({"slept": _seconds(request), "pid": os.getpid()})


async def block_event_loop(request: HttpRequest) -> JsonResponse:
    """The bug Gunicorn's heartbeat exists for: blocking calls on the event loop."""
    time.sleep(_seconds(request))  # noqa: ASYNC251 - blocking on purpose
    return JsonResponse({"blocked": _seconds(request)})


def raise_error(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("boom: raised on purpose by a test")


def pid(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


def database_sleep(request: HttpRequest) -> JsonResponse:
    """Hold a database connection for a while (pg_sleep), to fill the pool."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [_seconds(request)])
    return JsonResponse({"slept": _seconds(request), "pid": os.getpid()})
