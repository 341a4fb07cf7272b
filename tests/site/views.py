"""The test site's views: plain ones (a synchronous and an async JSON view, one
query), and views that misbehave on purpose, so tests can watch the server cope."""

import asyncio
import contextvars
import gzip
import hashlib
import io
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import connection, connections, transaction
from django.http import FileResponse, HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from django_k8s_runtime.observability.request_id import current_request_id


def hello(request: HttpRequest) -> JsonResponse:
    """A synchronous JSON view that touches no database."""
    return JsonResponse({"message": "Hello, world!"})


async def hello_async(request: HttpRequest) -> JsonResponse:
    """The same, ``async def``: it runs on the worker's event loop."""
    return JsonResponse({"message": "Hello, world!"})


def groups(request: HttpRequest) -> JsonResponse:
    """One query on a migrated table (``auth_group``: empty after ``migrate``)."""
    from django.contrib.auth.models import Group

    return JsonResponse({"groups": list(Group.objects.values_list("name", flat=True)[:10])})


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


def raise_lookup_error(request: HttpRequest, key: str) -> JsonResponse:
    raise KeyError(key)


_kept: list[bytes] = []


def grow(request: HttpRequest) -> JsonResponse:
    """Keep ``kib`` KiB more in this worker's memory for good: a leak, on purpose."""
    _kept.append(b"\x01" * (int(request.GET.get("kib", "100")) * 1024))  # written: resident
    return JsonResponse({"kept_kib": sum(len(part) for part in _kept) // 1024, "pid": os.getpid()})


def pid(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


def frozen(request: HttpRequest) -> JsonResponse:
    """How many objects the worker keeps out of the garbage collector's sight."""
    import gc

    return JsonResponse({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())})


def database_sleep(request: HttpRequest) -> JsonResponse:
    """Hold a database connection for a while (pg_sleep), to fill the pool."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [_seconds(request)])
    return JsonResponse({"slept": _seconds(request), "pid": os.getpid()})


def database_ping(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"pid": os.getpid()})


def database_settings(request: HttpRequest) -> JsonResponse:
    """The bounds a request's session runs under (DB_REQUEST_TIMEOUTS, or a pooler's)."""
    names = ("statement_timeout", "idle_in_transaction_session_timeout")
    values = {}
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
    return JsonResponse(values)


def database_iterate(request: HttpRequest) -> JsonResponse:
    """Read a table a row at a time with QuerySet.iterator(): a server-side cursor
    unless DISABLE_SERVER_SIDE_CURSORS."""
    from django.contrib.contenttypes.models import ContentType

    seen = 0
    for _ in ContentType.objects.iterator(chunk_size=1):
        seen += 1
        time.sleep(0.01)  # other requests take the server connection meanwhile
    return JsonResponse({"rows": seen})


def idle_in_transaction(request: HttpRequest) -> JsonResponse:
    """Open a transaction, then wait on something else with it open."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        time.sleep(_seconds(request))
    return JsonResponse({"slept": _seconds(request)})


# The request path (server/handler.py): which thread ran what, and each signal once --

_request_started_in: contextvars.ContextVar[str] = contextvars.ContextVar("request_started_in")
SIGNALS: dict[str, dict[str, Any]] = {}  # by request id, in this worker process
_cancelled_views: list[str] = []
_stream_progress: dict[str, int] = {}


def _on_request_started(**kwargs: Any) -> None:
    _request_started_in.set(threading.current_thread().name)
    record = SIGNALS.setdefault(current_request_id() or "-", {"started": 0, "finished": 0})
    record["started"] += 1
    record["started_in"] = threading.current_thread().name


def _on_request_finished(**kwargs: Any) -> None:
    record = SIGNALS.setdefault(current_request_id() or "-", {"started": 0, "finished": 0})
    record["finished"] += 1
    record["finished_in"] = threading.current_thread().name


request_started.connect(_on_request_started, dispatch_uid="tests.request_started")
request_finished.connect(_on_request_finished, dispatch_uid="tests.request_finished")


def _where() -> dict[str, Any]:
    return {
        "thread": threading.current_thread().name,
        "main_thread": threading.current_thread() is threading.main_thread(),
        "pid": os.getpid(),
    }


def where_sync(request: HttpRequest) -> JsonResponse:
    return JsonResponse({**_where(), "request_started_in": _request_started_in.get(None)})


async def where_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({**_where(), "request_started_in": _request_started_in.get(None)})


def async_to_sync_from_a_sync_view(request: HttpRequest) -> JsonResponse:
    async def inside() -> dict[str, Any]:
        return _where()

    return JsonResponse({"view": _where(), "coroutine": async_to_sync(inside)()})


def signals_of(request: HttpRequest) -> JsonResponse:
    return JsonResponse(SIGNALS.get(request.GET["id"], {}))


async def cancellable_sleep(request: HttpRequest) -> JsonResponse:
    """An async view that notes being cancelled (client gone, request timed out)."""
    try:
        await asyncio.sleep(_seconds(request))
    except asyncio.CancelledError:
        _cancelled_views.append(current_request_id() or "-")
        raise
    return JsonResponse({"slept": _seconds(request)})


def cancelled_views(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"cancelled": _cancelled_views})


def _chunks(request: HttpRequest) -> Iterator[bytes]:
    size, chunk = int(request.GET.get("bytes", "1000")), int(request.GET.get("chunk", "1000"))
    key = request.GET.get("key", "-")
    sent = 0
    try:
        while sent < size:
            part = bytes([65 + (sent // chunk) % 26]) * min(chunk, size - sent)
            sent += len(part)
            _stream_progress[key] = sent
            time.sleep(float(request.GET.get("pause", "0")))
            yield part
    finally:
        _stream_progress[f"{key}:closed"] = sent


def stream_sync(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_chunks(request), content_type="application/octet-stream")


def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in _chunks(request):
            await asyncio.sleep(0)
            yield part

    return StreamingHttpResponse(parts(), content_type="application/octet-stream")


def stream_progress(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_stream_progress)


def file(request: HttpRequest) -> FileResponse:
    size = int(request.GET.get("bytes", "1000"))
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
    handle.write(bytes(range(256)) * (size // 256) + bytes(range(size % 256)))
    handle.seek(0)
    return FileResponse(handle, content_type="application/octet-stream")


_echoed: list[dict[str, int]] = []


@csrf_exempt
def echo(request: HttpRequest) -> JsonResponse:
    """Reads the form, so Django's upload limits apply (after ``?pause=`` seconds)."""
    time.sleep(float(request.GET.get("pause", "0")))
    answer = {"fields": len(request.POST), "bytes": len(request.body)}
    _echoed.append(answer)
    return JsonResponse(answer)


@csrf_exempt
def upload(request: HttpRequest) -> JsonResponse:
    """A form with files, as Django parses it: each file's size and its digest."""
    return JsonResponse(
        {
            "fields": dict(request.POST.items()),
            "files": {
                name: {"size": each.size, "sha256": hashlib.sha256(each.read()).hexdigest()}
                for name, each in request.FILES.items()
            },
        }
    )


# The request's body file (server/handler.py closes it when the request is done) ------

_body_files: dict[str, Any] = {}  # by request id, in this worker process


@csrf_exempt
def gzip_body(request: HttpRequest) -> JsonResponse | StreamingHttpResponse:
    """POST a gzip-encoded body: it is decompressed into a new stream, as a middleware
    decompressing request bodies does, so closing the request no longer closes the file
    Django read the body into. GET ``?id=``: whether that file is closed."""
    if request.method == "GET":
        return JsonResponse({"closed": _body_files[request.GET["id"]].closed})
    _body_files[current_request_id() or "-"] = request._stream  # the body file
    request._stream = io.BytesIO(gzip.decompress(request._stream.read()))
    size = len(request.body)
    if request.GET.get("respond") == "async-stream":

        async def parts() -> AsyncIterator[bytes]:
            yield str(size).encode()

        return StreamingHttpResponse(parts(), content_type="text/plain")
    return JsonResponse({"bytes": size})


# Streams and connections (server/handler.py, server/streaming.py) --------------------

_ran: dict[str, str] = {}  # by key: the thread a view ran in
_connections: dict[str, Any] = {}  # by key: the Django connection a request used
_query_threads: dict[str, set[str]] = {}  # by key: the threads a request's queries ran in
_stream_cancelled: list[str] = []


def note_ran(request: HttpRequest) -> JsonResponse:
    """A synchronous view that notes it ran (a request withdrawn never does)."""
    _ran[request.GET["key"]] = threading.current_thread().name
    return JsonResponse({"ran": True})


def ran(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ran": request.GET["key"] in _ran})


def _query_and_note(key: str) -> int:
    """In the request's thread (sync_to_async from the view or the stream): one query,
    and which connection ran it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    _connections[key] = connections["default"]  # this thread's own, not the proxy
    _query_threads.setdefault(key, set()).add(threading.current_thread().name)
    return one


async def stream_with_queries(request: HttpRequest) -> StreamingHttpResponse:
    """Server-sent events as an async view writes them: a query before the response
    and one for every event, each through ``sync_to_async`` (the ORM's way)."""
    from asgiref.sync import sync_to_async

    key = request.GET.get("key", "-")
    events, pause = int(request.GET.get("events", "3")), float(request.GET.get("pause", "0.05"))
    await sync_to_async(_query_and_note)(key)

    async def parts() -> AsyncIterator[bytes]:
        try:
            for number in range(events):
                await sync_to_async(_query_and_note)(key)
                yield b"data: %d\n\n" % number
                await asyncio.sleep(pause)
        except asyncio.CancelledError:
            _stream_cancelled.append(key)
            raise

    return StreamingHttpResponse(parts(), content_type="text/event-stream")


def connection_of(request: HttpRequest) -> JsonResponse:
    """Whether the connection a request used is still open (given back: it is not)."""
    used = _connections.get(request.GET["key"])
    return JsonResponse({"open": used is not None and used.connection is not None})


def stream_cancelled(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"cancelled": request.GET["key"] in _stream_cancelled})


_leaked_threads: list[threading.Thread] = []


def leak_a_connection(request: HttpRequest) -> JsonResponse:
    """A thread of the project's own that takes a connection and never gives it back
    (the bug the runtime's leak watch is for)."""
    taken = threading.Event()

    def hold() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        taken.set()
        threading.Event().wait()  # for ever, connection in hand

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    taken.wait(10)
    _leaked_threads.append(thread)
    return JsonResponse({"leaked": len(_leaked_threads), "pid": os.getpid()})


def threads_and_modules(request: HttpRequest) -> JsonResponse:
    """What this worker runs beside its requests: its threads' names, and which of the
    runtime's tracing modules and OpenTelemetry's tracing SDK are loaded (tracing off
    loads none; redis-py loads OpenTelemetry's metrics SDK of its own when installed)."""
    import sys

    tracing = ("django_k8s_runtime.observability.traces", "opentelemetry.sdk.trace")
    return JsonResponse(
        {
            "pid": os.getpid(),
            "threads": sorted(thread.name for thread in threading.enumerate()),
            "tracing_loaded": [name for name in tracing if name in sys.modules],
        }
    )
