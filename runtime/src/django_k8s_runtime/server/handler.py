"""Django's request path in our worker: one visit to a thread per request.

Why not Django's own ``ASGIHandler``: it opens a new thread per request and, in
async mode, hands every synchronous middleware method to that thread and back
separately, about a dozen hand-offs per request, which made a synchronous view
cost 2-5x the CPU it costs under WSGI (docs/benchmarks.md).

Here the body is read on the event loop; then everything synchronous about the
request happens in **one visit to one thread** (:mod:`server.threads`), in the
order ``WSGIHandler`` does it: ``request_started``, the request object, the whole
middleware chain (loaded once, in sync mode, as under WSGI), the view, rendering,
the response's headers and body, and ``close()`` (``request_finished``: database
connections go back to the pool); then the response is sent from the event loop.

* A **synchronous view** runs in that thread, one of ``GUNICORN_THREADS``.
* An **``async def`` view** runs on the event loop: Django calls it through
  ``async_to_sync`` from the middleware chain, which asgiref runs on the worker's
  loop while the thread waits. Its thread comes from the pool without a limit,
  so such requests never wait for one of ``GUNICORN_THREADS`` and many can wait
  at once. As under Django's ``ASGIHandler``, the view is cancelled when the client
  goes away (or the request timeout answers for it).

Which view a request is for is known only once its path is resolved, so when the
project has async views at all, the path is first resolved on the event loop
against the root URLconf (a few microseconds). Should a middleware switch
``request.urlconf`` so that the view turns out different, it still runs
correctly, in whichever thread the request got.

Streaming responses are read in the same visit. One that ends within
``BUFFER_BYTES`` (a static file, a small CSV) is sent whole; a longer one is
handed to the event loop ``BUFFER_BYTES`` at a time, the thread waiting for each
part to be sent (as a WSGI server's thread would) and stopping early when the
client goes away. A streaming response over an async iterator is sent from the
event loop and then closed in a thread.

Where Django's series differ, this does what the newest does, on every series: the
script prefix is stripped at a "/" boundary (6.1), ``Set-Cookie`` is
``Morsel.OutputString()`` (6.0), and the body file is closed with the response.

This reaches into Django and asgiref beyond their documented APIs (``BaseHandler``,
``ASGIHandler.read_body``/``create_request``, a response's ``_handler_class`` and
``_resource_closers``, asgiref's ``SyncToAsync.threadlocal.task_context``), so
``pyproject.toml`` admits only the Django series and the asgiref series the tests
have run on, and tests/runtime/server/test_handler.py checks those internals are still what
this module uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import SyncToAsync, iscoroutinefunction
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import Resolver404, URLResolver, get_resolver, set_script_prefix

from django_k8s_runtime.asgi_types import Message, Receive, Scope, Send, send_json
from django_k8s_runtime.server.threads import Job, ThreadPool

if TYPE_CHECKING:
    from django_k8s_runtime.server.timeout import Deadline

logger = logging.getLogger("server.handler")

BUFFER_BYTES = 256 * 1024
NOTHING_TO_SEND: tuple[list[Message], None] = ([], None)


class DjangoApplication:
    """The Django project as an ASGI application.

    ``threads`` and ``background_threads`` give the pools of the process serving
    the request (made after the worker forks): for synchronous views, and for what
    must not wait for one of those (the synchronous middleware around async views,
    a file's reads, a query's cancel). ``max_requests`` is how many
    requests this process holds at once (Gunicorn's ``worker_connections``); beyond
    it, and for a synchronous request that could not get a thread in time, the
    answer is a quick 503 (:func:`refuse`) the load balancer can retry elsewhere."""

    def __init__(
        self,
        *,
        threads: Callable[[], ThreadPool],
        background_threads: Callable[[], ThreadPool],
        max_requests: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.threads = threads
        self.background_threads = background_threads
        self.max_requests = max_requests
        self.in_flight = 0  # requests this process holds now
        self.async_in_flight = 0  # of them, requests to async views (the metrics read it)
        self.handler = OneHopHandler(background=background_threads)
        self.has_async_views = any_async_view(get_resolver())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        limit = self.max_requests()
        if limit is not None and self.in_flight >= limit:
            _record_route(scope)
            await refuse(scope, send, f"{self.in_flight} requests in flight, the most it takes")
            return
        self.in_flight += 1
        try:
            if self.has_async_views and is_for_async_view(scope):
                self.async_in_flight += 1
                try:
                    await self.handler.serve(
                        scope, receive, send, self.background_threads(), cancellable=True
                    )
                finally:
                    self.async_in_flight -= 1
                return
            threads = self.threads()
            wait_until = None
            if not threads.has_idle_thread():
                _record_route(scope)  # labelled by route even if it never runs
                wait_until = admission(threads, scope.get("deadline"))
                if wait_until is REFUSED:
                    why = f"{threads.waiting} requests wait for a thread already"
                    await refuse(scope, send, why)
                    return
            await self.handler.serve(
                scope, receive, send, threads, cancellable=False, wait_until=wait_until
            )
        finally:
            self.in_flight -= 1


# Admission: a quick 503 instead of a 504 after a long wait ----------------------------

QUEUE_SHARE = 0.5  # of the time left to its deadline, what a request may spend waiting
REFUSED = -1.0
RETRY_AFTER_SECONDS = 1
BUSY = b'{"error": "server busy, retry"}'


def admission(threads: ThreadPool, deadline: Deadline | None) -> float | None:
    """For a synchronous request that finds every thread busy: REFUSED when it would
    not get a thread and finish within ``QUEUE_SHARE`` of the time left to its
    deadline (judged from the queue and how long requests take lately); otherwise
    the loop time by which it must have a thread, or None without a deadline.

    Half the time is kept back for the request itself and for the estimate being
    wrong: an admitted request should finish within its timeout, not earn a 504."""
    if deadline is None:
        return None
    now = asyncio.get_running_loop().time()
    budget = (deadline.at - now) * QUEUE_SHARE
    assert threads.size is not None
    expected_wait = (threads.waiting + 1) * threads.job_seconds / threads.size
    if expected_wait + threads.job_seconds > budget:
        return REFUSED
    return now + budget


async def refuse(scope: Scope, send: Send, why: str) -> None:
    """503 with ``Retry-After``, at once: this process is full. A request with a body
    closes its connection (the body is not read)."""
    _refusals.note(why, scope)
    headers = [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS), (b"cache-control", b"no-store")]
    if _has_body(scope):
        headers.append((b"connection", b"close"))
    await send_json(send, 503, BUSY, headers=headers)


class _Refusals:
    """One warning line per ``INTERVAL`` at most: under overload every refusal is
    in the access log already, and a line each would only add to the load."""

    INTERVAL = 10.0

    def __init__(self) -> None:
        self._since_last_line = 0
        self._last_line_at = -self.INTERVAL

    def note(self, why: str, scope: Scope) -> None:
        self._since_last_line += 1
        now = time.monotonic()
        if now - self._last_line_at < self.INTERVAL:
            return
        logger.warning(
            "requests refused with 503, the worker is full: %d since the last such line; "
            "this one because %s: %s %s",
            self._since_last_line,
            why,
            scope.get("method", ""),
            scope.get("path", ""),
        )
        self._since_last_line, self._last_line_at = 0, now


_refusals = _Refusals()


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


# Which view a path is for ---------------------------------------------------------------


def is_for_async_view(scope: Scope) -> bool:
    return _resolve(_path_info(scope))[0]


def _record_route(scope: Scope) -> None:
    """The route label, for a request answered (or counted) before its view runs;
    Django's ``record_route`` middleware leaves one set here as it is."""
    if "route" not in scope:
        route = _resolve(_path_info(scope))[1]
        if route is not None:
            scope["route"] = route


def _path_info(scope: Scope) -> str:
    """The path Django resolves, as Django 6.1's ``ASGIRequest`` takes it: the prefix
    is stripped only at a "/" boundary. 5.2 and 6.0 strip any leading match (``x/``
    of ``/app/x/`` under ``/app/``); where the two rules differ, theirs leaves a path
    that resolves to nothing, so the newest rule is right on every series."""
    path, prefix = scope["path"], get_script_prefix(scope).rstrip("/")
    if prefix and (path.startswith(prefix + "/") or path == prefix):
        return path[len(prefix) :]
    return path


@functools.lru_cache(maxsize=4096)
def _resolve(path: str) -> tuple[bool, str | None]:
    """Whether ``path`` is for an ``async def`` view, and its route pattern.

    Resolving costs about 10 µs; the answer for a path never changes (the root
    URLconf is fixed), so the paths seen most often are resolved once."""
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False, None
    return iscoroutinefunction(match.func), "/" + match.route


def any_async_view(resolver: URLResolver) -> bool:
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if any_async_view(pattern):
                return True
        elif iscoroutinefunction(pattern.callback):
            return True
    return False


class OneHopHandler(ASGIHandler):
    """Django's ASGI request and response, with the middleware chain in sync mode.

    ``background`` gives the pool for short work that must not wait for one of
    ``GUNICORN_THREADS`` (reading a file being sent, cancelling a query)."""

    def __init__(self, background: Callable[[], ThreadPool]) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.background = background

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        threads: ThreadPool,
        *,
        cancellable: bool,
        wait_until: float | None = None,
    ) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:  # the client left, or sent a body the server refused
            _record_route(scope)
            return
        loop = asyncio.get_running_loop()
        shared = _SharedRequest(loop, receive, send)
        view_tasks: list[asyncio.Task[Any]] | None = [] if cancellable else None
        job = threads.submit(self.respond, scope, body_file, shared, view_tasks)
        deadline = scope.get("deadline")
        if deadline is not None:
            deadline.on_expiry(functools.partial(self._stop_queries, shared, job))
        give_up = None
        if wait_until is not None:
            give_up = loop.call_at(wait_until, self._give_up, threads, job, shared)
        try:
            if view_tasks is not None:
                await shared.unless_gone(job.future, on_gone=lambda: _cancel(view_tasks))
            try:
                messages, rest = await job.future
            except asyncio.CancelledError:
                if not shared.gave_up or asyncio.current_task().cancelling():
                    raise
                body_file.close()
                await refuse(scope, send, "no thread came free in time")
                return
            for message in messages:
                await send(message)
            if isinstance(rest, FileParts):
                await self._send_file_rest(rest, send, shared)
            elif rest is not None:
                await self._send_async_stream(rest, send, threads)
        except asyncio.CancelledError:
            if view_tasks:
                _cancel(view_tasks)  # e.g. the worker's graceful timeout ran out
            raise
        finally:
            if give_up is not None:
                give_up.cancel()
            shared.forget()

    def _give_up(self, threads: ThreadPool, job: Job, shared: _SharedRequest) -> None:
        """The request waited its share of the deadline and no thread came free."""
        if threads.withdraw(job):
            shared.gave_up = True

    def _stop_queries(self, shared: _SharedRequest, job: Job) -> None:
        """At the request's deadline: a view still running in its thread has its
        database query cancelled, so the thread and the connection come back."""
        if job.taken and not job.future.done():
            self.background().run(shared.cancel_queries)

    # In the thread --------------------------------------------------------------

    def respond(
        self,
        scope: Scope,
        body_file: Any,
        shared: _SharedRequest,
        view_tasks: list[asyncio.Task[Any]] | None,
    ) -> tuple[list[Message], HttpResponseBase | FileParts | None]:
        """Everything synchronous about one request. Returns the messages still to
        send and what is left of a streaming response to send from the event loop."""
        shared.databases = _databases_of_this_thread()
        # asgiref adds the task running an async view here, so it can be cancelled.
        SyncToAsync.threadlocal.task_context = view_tasks
        try:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body_file)
            if request is None:
                body_file.close()
            else:
                response = self.get_response(request)
                # Closed with the response, after the request, as Django's own handler
                # closes it: closing the request closes only the stream it reads now.
                response._resource_closers.append(body_file.close)
        except asyncio.CancelledError:
            # The async view was cancelled (the client left, or the request timed
            # out): Django's ASGIHandler then ends the request the same way.
            body_file.close()
            shared.finish(signals.request_finished.send, sender=self.__class__)
            return NOTHING_TO_SEND
        finally:
            SyncToAsync.threadlocal.task_context = None
        response._handler_class = self.__class__
        return self._render(response, shared)

    def _render(
        self, response: HttpResponseBase, shared: _SharedRequest
    ) -> tuple[list[Message], HttpResponseBase | FileParts | None]:
        streamed_later = False
        try:
            start = self.response_start(response)
            if not response.streaming:
                return [start, {"type": "http.response.body", "body": response.content}], None
            if response.is_async:
                streamed_later = True
                return [start], response
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
            return self._read_stream(response, start, shared)
        finally:
            if not streamed_later:
                shared.finish(response.close)

    @staticmethod
    def _read_stream(
        response: HttpResponseBase, start: Message, shared: _SharedRequest
    ) -> tuple[list[Message], FileParts | None]:
        """A synchronous streaming response, up to ``BUFFER_BYTES`` at a time.

        The rest of a file is read and sent from the event loop, so a client that
        reads slowly holds no thread; any other iterator is read here, this thread
        waiting for each part to be sent, until the client is gone or the request's
        deadline passes (the iterator may need this thread: a database cursor)."""
        pending: list[Message] = [start]
        buffered = 0
        parts = iter(response)
        for part in parts:
            if not part:
                continue
            pending.append({"type": "http.response.body", "body": part, "more_body": True})
            buffered += len(part)
            if buffered >= BUFFER_BYTES:
                if isinstance(response, FileResponse):
                    return pending, FileParts(parts, response)
                if not shared.send_from_thread(pending):
                    return [], None  # the client is gone (or the request timed out)
                pending, buffered = [], 0
        pending.append({"type": "http.response.body", "body": b"", "more_body": False})
        return pending, None

    @staticmethod
    def response_start(response: HttpResponseBase) -> Message:
        """``ASGIHandler.send_response``'s first message, made here in the thread."""
        headers = [
            (
                header.encode("ascii") if isinstance(header, str) else bytes(header),
                value.encode("latin1") if isinstance(value, str) else bytes(value),
            )
            for header, value in response.items()
        ]
        headers += [
            (b"Set-Cookie", cookie.OutputString().encode("ascii"))  # as Django 6.0+
            for cookie in response.cookies.values()
        ]
        return {"type": "http.response.start", "status": response.status_code, "headers": headers}

    # On the event loop ----------------------------------------------------------

    async def _send_file_rest(self, rest: FileParts, send: Send, shared: _SharedRequest) -> None:
        """The rest of a file: read in the background pool, ``BUFFER_BYTES`` at a
        time, sent as the client takes it."""
        background = self.background()
        shared.start_watching()
        try:
            more = True
            while more:
                parts, more = await background.run(rest.read, BUFFER_BYTES)
                for part in parts:
                    if shared.gone:
                        return
                    await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await background.run(rest.close)

    async def _send_async_stream(
        self, response: HttpResponseBase, send: Send, threads: ThreadPool
    ) -> None:
        try:
            async with contextlib.aclosing(aiter(response)) as content:
                async for part in content:
                    for chunk, _ in self.chunk_bytes(part):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await threads.run(response.close)


class FileParts:
    """What is left of a ``FileResponse`` once its first ``BUFFER_BYTES`` are read.

    The response itself is closed in its thread as usual (``request_finished``:
    the request's database connections go back to the pool); only the file's own
    closers are kept, to run when the file has been sent."""

    def __init__(self, parts: Any, response: HttpResponseBase) -> None:
        self._parts = parts
        # Django's private list (pinned with the handler): detach the file's close.
        self._closers, response._resource_closers = response._resource_closers, []

    def read(self, size: int) -> tuple[list[bytes], bool]:
        """Up to ``size`` bytes of parts, and whether more follow."""
        found: list[bytes] = []
        total = 0
        for part in self._parts:
            if part:
                found.append(part)
                total += len(part)
                if total >= size:
                    return found, True
        return found, False

    def close(self) -> None:
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer()


def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in list(tasks):
        task.cancel()


_this_thread = threading.local()


def _databases_of_this_thread() -> list[Any]:
    """This thread's Django database connections (made once per thread: Django keeps
    one per alias and thread)."""
    try:
        return _this_thread.databases
    except AttributeError:
        from django.db import connections

        found = _this_thread.databases = [connections[alias] for alias in connections]
        return found


def cancel_running_query(database: Any) -> bool:
    """Cancel the statement a Django connection is running, from another thread."""
    raw = database.connection
    if raw is None:
        return False
    if database.vendor == "postgresql":
        from psycopg import pq

        if raw.info.transaction_status != pq.TransactionStatus.ACTIVE:
            return False
        raw.cancel_safe(timeout=CANCEL_SECONDS)
        return True
    if database.vendor == "sqlite":
        raw.interrupt()
        return True
    return False


CANCEL_SECONDS = 5.0


class _SharedRequest:
    """The request as the event loop and its thread share it: whether the client is
    still there, a way to hand it a long streaming response part by part, and the
    database connections the thread uses (cancelled at the deadline).

    Watching for the client going away costs a task, so it starts only where it
    can change something: around an async view (which is then cancelled) and once
    a long streaming response is under way (which then stops being read). The
    request timeout looks the same as a client going away (server/timeout.py)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive, send: Send) -> None:
        self._loop = loop
        self._receive = receive
        self._send = send
        self._gone = False  # set on the event loop, read by the thread
        self._watch: asyncio.Task[None] | None = None
        self._sending: asyncio.Task[None] | None = None
        self.gave_up = False  # no thread came free in time: answered 503
        self.databases: list[Any] = []
        self._finished = False  # the thread is giving its connections back
        self._lock = threading.Lock()

    @property
    def gone(self) -> bool:
        return self._gone

    async def unless_gone(self, job: asyncio.Future[Any], on_gone: Callable[[], None]) -> None:
        """Wait for ``job``; should the client leave first, call ``on_gone``."""
        self.start_watching()
        assert self._watch is not None
        await asyncio.wait((job, self._watch), return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            on_gone()

    def send_from_thread(self, messages: list[Message]) -> bool:
        """Send ``messages``, waiting as long as the client takes them; False once the
        client is gone or the deadline has passed (then the wait ends at once)."""
        if self._gone:
            return False
        future = asyncio.run_coroutine_threadsafe(self._send_all(messages), self._loop)
        try:
            future.result()
        except concurrent.futures.CancelledError:
            return False
        return not self._gone

    async def _send_all(self, messages: list[Message]) -> None:
        self.start_watching()
        self._sending = asyncio.current_task()
        try:
            for message in messages:
                if self._gone:
                    return
                await self._send(message)
        finally:
            self._sending = None

    def start_watching(self) -> None:
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_disconnect())

    async def _watch_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        if self._sending is not None:
            self._sending.cancel()  # a thread waits for it: let it go

    def finish(self, close: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """In the thread: end the request (``request_finished`` gives the database
        connections back), never while :meth:`cancel_queries` is cancelling one."""
        with self._lock:
            self._finished = True
        close(*args, **kwargs)

    def cancel_queries(self) -> None:
        """In a background thread: cancel what the request's thread runs in its
        databases, unless it has finished (its connections may serve another request)."""
        with self._lock:
            if self._finished:
                return
            for database in self.databases:
                try:
                    if cancel_running_query(database):
                        logger.warning(
                            "cancelled the query of a request past its deadline (database %s)",
                            database.alias,
                        )
                except Exception as error:
                    logger.warning(
                        "could not cancel a query (database %s): %s", database.alias, error
                    )

    def forget(self) -> None:
        """The request is over on the event loop (sent, failed or cancelled)."""
        self._gone = True
        if self._watch is not None:
            self._watch.cancel()
