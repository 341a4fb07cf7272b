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
have run on, and tests/server/test_handler.py checks those internals are still what
this module uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import SyncToAsync, iscoroutinefunction
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import Resolver404, URLResolver, get_resolver, set_script_prefix

from django_k8s_runtime.server.threads import ThreadPool

Scope = dict[str, Any]
Message = dict[str, Any]
BUFFER_BYTES = 256 * 1024
NOTHING_TO_SEND: tuple[list[Message], None] = ([], None)


class DjangoApplication:
    """The Django project as an ASGI application.

    ``threads`` and ``waiting_threads`` give the pools of the process serving the
    request (made after the worker forks): for synchronous views, and for the
    synchronous middleware around async views."""

    def __init__(
        self, *, threads: Callable[[], ThreadPool], waiting_threads: Callable[[], ThreadPool]
    ) -> None:
        self.threads = threads
        self.waiting_threads = waiting_threads
        self.handler = OneHopHandler()
        self.has_async_views = any_async_view(get_resolver())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if self.has_async_views and is_for_async_view(scope):
            await self.handler.serve(scope, receive, send, self.waiting_threads(), cancellable=True)
        else:
            await self.handler.serve(scope, receive, send, self.threads(), cancellable=False)


def is_for_async_view(scope: Scope) -> bool:
    return _resolves_to_async_view(_path_info(scope["path"], get_script_prefix(scope)))


def _path_info(path: str, script_prefix: str) -> str:
    """The path Django resolves, as Django 6.1's ``ASGIRequest`` takes it: the prefix
    is stripped only at a "/" boundary. 5.2 and 6.0 strip any leading match (``x/``
    of ``/app/x/`` under ``/app/``); where the two rules differ, theirs leaves a path
    that resolves to nothing, so the newest rule is right on every series."""
    prefix = script_prefix.rstrip("/")
    if prefix and (path.startswith(prefix + "/") or path == prefix):
        return path[len(prefix) :]
    return path


@functools.lru_cache(maxsize=4096)
def _resolves_to_async_view(path: str) -> bool:
    """Resolving costs about 10 µs; the answer for a path never changes (the root
    URLconf is fixed), so the paths seen most often are resolved once."""
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


def any_async_view(resolver: URLResolver) -> bool:
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if any_async_view(pattern):
                return True
        elif iscoroutinefunction(pattern.callback):
            return True
    return False


class OneHopHandler(ASGIHandler):
    """Django's ASGI request and response, with the middleware chain in sync mode."""

    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def serve(
        self, scope: Scope, receive: Any, send: Any, threads: ThreadPool, *, cancellable: bool
    ) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        client = _Client(asyncio.get_running_loop(), receive, send)
        view_tasks: list[asyncio.Task[Any]] | None = [] if cancellable else None
        try:
            job = threads.run(self.respond, scope, body_file, client, view_tasks)
            if view_tasks is not None:
                await client.unless_gone(job, on_gone=lambda: _cancel(view_tasks))
            messages, leftover = await job
            for message in messages:
                await send(message)
            if leftover is not None:
                await self._send_async_stream(leftover, send, threads)
        except asyncio.CancelledError:
            if view_tasks:
                _cancel(view_tasks)  # e.g. the worker's graceful timeout ran out
            raise
        finally:
            client.forget()

    # In the thread --------------------------------------------------------------

    def respond(
        self,
        scope: Scope,
        body_file: Any,
        client: _Client,
        view_tasks: list[asyncio.Task[Any]] | None,
    ) -> tuple[list[Message], HttpResponseBase | None]:
        """Everything synchronous about one request. Returns the messages still to
        send and, for a streaming response over an async iterator, the response."""
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
            signals.request_finished.send(sender=self.__class__)
            return NOTHING_TO_SEND
        finally:
            SyncToAsync.threadlocal.task_context = None
        response._handler_class = self.__class__
        return self._render(response, client)

    def _render(
        self, response: HttpResponseBase, client: _Client
    ) -> tuple[list[Message], HttpResponseBase | None]:
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
            return self._read_stream(response, start, client), None
        finally:
            if not streamed_later:
                response.close()

    @staticmethod
    def _read_stream(response: HttpResponseBase, start: Message, client: _Client) -> list[Message]:
        pending: list[Message] = [start]
        buffered = 0
        for part in response:
            if not part:
                continue
            pending.append({"type": "http.response.body", "body": part, "more_body": True})
            buffered += len(part)
            if buffered >= BUFFER_BYTES:
                if not client.send_from_thread(pending):
                    return []  # the client is gone (or the request timed out)
                pending, buffered = [], 0
        pending.append({"type": "http.response.body", "body": b"", "more_body": False})
        return pending

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

    async def _send_async_stream(
        self, response: HttpResponseBase, send: Any, threads: ThreadPool
    ) -> None:
        try:
            async with contextlib.aclosing(aiter(response)) as content:
                async for part in content:
                    for chunk, _ in self.chunk_bytes(part):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await threads.run(response.close)


def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in list(tasks):
        task.cancel()


class _Client:
    """The connection as the thread sees it: whether the client is still there, and
    a way to hand it a long streaming response part by part.

    Watching for the client going away costs a task, so it starts only where it
    can change something: around an async view (which is then cancelled) and once
    a long streaming response is under way (which then stops being read). The
    request timeout looks the same as a client going away (server/timeout.py)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Any, send: Any) -> None:
        self._loop = loop
        self._receive = receive
        self._send = send
        self._gone = False  # set on the event loop, read by the thread
        self._watch: asyncio.Task[None] | None = None

    async def unless_gone(self, job: asyncio.Future[Any], on_gone: Callable[[], None]) -> None:
        """Wait for ``job``; should the client leave first, call ``on_gone``."""
        self._start_watching()
        assert self._watch is not None
        await asyncio.wait((job, self._watch), return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            on_gone()

    def send_from_thread(self, messages: list[Message]) -> bool:
        if self._gone:
            return False
        asyncio.run_coroutine_threadsafe(self._send_all(messages), self._loop).result()
        return not self._gone

    async def _send_all(self, messages: list[Message]) -> None:
        self._start_watching()
        for message in messages:
            if self._gone:
                return
            await self._send(message)

    def _start_watching(self) -> None:
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_disconnect())

    async def _watch_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone = True

    def forget(self) -> None:
        """The request is over on the event loop (sent, failed or cancelled)."""
        self._gone = True
        if self._watch is not None:
            self._watch.cancel()
