"""Django's request path in our worker: one visit to a thread per request.

Why not Django's own ``ASGIHandler``: it opens a new thread per request and, in
async mode, hands every synchronous middleware method to that thread and back
separately, about a dozen hand-offs per request, which made a synchronous view
cost 2-5x the CPU it costs under WSGI (the documentation's benchmarks).

Here the body is read on the event loop; then everything synchronous about the
request happens in **one visit to one thread** (:mod:`.threads`), in the order
``WSGIHandler`` does it: ``request_started``, the request object, the whole
middleware chain (loaded once, in sync mode, as under WSGI), the view, rendering,
and ``close()`` (``request_finished``: the thread's database connections go back
to the pool); the response is sent from the event loop.

* A **synchronous view** runs in that thread, one of ``GUNICORN_THREADS``.
* An **``async def`` view** runs on the event loop: Django calls it through
  ``async_to_sync`` from the middleware chain, which asgiref runs on the worker's
  loop while the thread waits, running what the view hands to ``sync_to_async``.
  Its thread comes from the pool without a limit, so such requests never wait for
  one of ``GUNICORN_THREADS``. As under Django's handler, the view is cancelled
  when the client goes away (or the request timeout answers for it).
* A **streaming response** is sent as it is made (:mod:`.streaming`); the thread
  that ran the view ends the request when the stream ends, so the connections it
  holds go back from the thread that holds them.

Everything Django's handler does, this does, with Django's signals (sent by
``ASGIHandler``, so receivers connected to it fire), except what the documentation's
Serving page lists. Where Django's series differ, this does what the newest does: the script
prefix is stripped at a "/" boundary (6.1), ``Set-Cookie`` is
``Morsel.OutputString()`` (6.0), and the body file is closed with the response.

This reaches into Django and asgiref beyond their documented APIs
(``BaseHandler``, ``ASGIHandler.read_body``/``create_request``, a response's
``_handler_class`` and ``_resource_closers``, asgiref's ``SyncToAsync.threadlocal``),
so the package admits only the Django and asgiref series its tests have run on,
and its tests check those internals are still what this module uses.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

from django_k8s_runtime.asgi_types import (
    CLIENT_GONE,
    DEADLINE,
    Message,
    Receive,
    Scope,
    Send,
)
from django_k8s_runtime.server import routes, threads
from django_k8s_runtime.server.admission import REFUSED, admission, refuse
from django_k8s_runtime.server.request_state import NOTHING_TO_SEND, RequestState
from django_k8s_runtime.server.streaming import (
    BUFFER_BYTES,
    FileParts,
    send_async_stream,
    send_file_rest,
)
from django_k8s_runtime.server.threads import ThreadPool

logger = logging.getLogger(__name__)

Rendered = tuple[list[Message], FileParts | None]


class DjangoApplication:
    """The Django project as an ASGI application.

    ``threads`` and ``background_threads`` give the pools of the process serving
    the request (made after the worker forks): for synchronous views, and for what
    must not wait for one of those (async views, a file's reads, a query's cancel).
    ``max_requests`` is how many requests this process holds at once (Gunicorn's
    ``worker_connections``); beyond it, and for a synchronous request that could
    not get a thread in time, the answer is a quick 503 (:mod:`.admission`).
    ``thread_connections`` gives the Django connections of the calling thread, and
    ``cancel_query`` cancels one's running statement (a request past its
    deadline); both come from the composition root."""

    def __init__(
        self,
        *,
        threads: Callable[[], ThreadPool],
        background_threads: Callable[[], ThreadPool],
        max_requests: Callable[[], int | None] = lambda: None,
        thread_connections: Callable[[], list[Any]] = list,
        cancel_query: Callable[[Any], bool] | None = None,
    ) -> None:
        self.threads = threads
        self.background_threads = background_threads
        self.max_requests = max_requests
        self.in_flight = 0  # requests this process holds now
        self.async_in_flight = 0  # of them, requests to async views (the metrics read it)
        self.handler = OneHopHandler(
            background=background_threads,
            thread_connections=thread_connections,
            cancel_query=cancel_query,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        limit = self.max_requests()
        if limit is not None and self.in_flight >= limit:
            routes.record_route(scope)
            await refuse(scope, send, f"{self.in_flight} requests in flight, the most it takes")
            return
        # The body first, on the event loop: a request still receiving it holds no
        # slot (its pace is the protocol's REQUEST_BODY_MIN_RATE).
        try:
            body_file = await self.handler.read_body(receive)
        except RequestAborted:  # the client left, or sent a body the server refused
            routes.record_route(scope)
            return
        self.in_flight += 1
        try:
            await self._serve(scope, body_file, receive, send)
        finally:
            self.in_flight -= 1

    async def _serve(self, scope: Scope, body_file: Any, receive: Receive, send: Send) -> None:
        if routes.is_for_async_view(scope):
            self.async_in_flight += 1
            try:
                pool = self.background_threads()
                await self.handler.serve(scope, body_file, receive, send, pool, async_view=True)
            finally:
                self.async_in_flight -= 1
            return
        pool = self.threads()
        wait_until = None
        if not pool.has_idle_thread():
            routes.record_route(scope)  # labelled by route even if it never runs
            wait_until = admission(pool, scope.get(DEADLINE))
            if wait_until is REFUSED:
                body_file.close()
                await refuse(scope, send, f"{pool.waiting} requests wait for a thread already")
                return
        await self.handler.serve(
            scope, body_file, receive, send, pool, async_view=False, wait_until=wait_until
        )


class OneHopHandler(ASGIHandler):
    """Django's ASGI request and response, with the middleware chain in sync mode."""

    def __init__(
        self,
        background: Callable[[], ThreadPool],
        thread_connections: Callable[[], list[Any]] = list,
        cancel_query: Callable[[Any], bool] | None = None,
    ) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.background = background
        self.thread_connections = thread_connections
        self.cancel_query = cancel_query

    async def serve(
        self,
        scope: Scope,
        body_file: Any,
        receive: Receive,
        send: Send,
        pool: ThreadPool,
        *,
        async_view: bool,
        wait_until: float | None = None,
    ) -> None:
        """The request, its body read, through ``pool``."""
        loop = asyncio.get_running_loop()
        request = RequestState(loop, scope, receive, send)
        if CLIENT_GONE not in scope:
            # A server that does not mark the scope: watch for a disconnect, as Django
            # does, and let the watch see one already there before the view may start.
            request.watch()
            await asyncio.sleep(0)
        job = pool.submit(self.respond, scope, body_file, request)
        request.running(job, pool)
        if async_view or job.behind:
            request.watch()  # a disconnect must act: cancel the view, withdraw the request
        deadline = scope.get(DEADLINE)
        if deadline is not None and self.cancel_query is not None:
            deadline.on_expiry(functools.partial(self._stop_queries, request, job))
        give_up = None
        if wait_until is not None:
            give_up = loop.call_at(wait_until, request.give_up)
        try:
            try:
                messages, rest = await job.future
            except asyncio.CancelledError:
                if not (request.gave_up or request.withdrawn) or _cancelling():
                    raise
                body_file.close()  # the view never ran
                if request.gave_up:
                    await refuse(scope, send, "no thread came free in time")
                return
            if request.gone:  # as Django's handler: no response for a client that left
                if rest is not None:
                    await self.background().run(rest.close)
                return
            for message in messages:
                await send(message)
            if rest is not None:
                await send_file_rest(rest, send, lambda: request.gone, self.background().run)
        except asyncio.CancelledError:
            request.cancel_tasks()  # e.g. the worker's graceful timeout ran out
            raise
        finally:
            if give_up is not None:
                give_up.cancel()
            request.forget()

    def _stop_queries(self, request: RequestState, job: threads.Job) -> None:
        """At the request's deadline: a view still running in its thread has its
        database query cancelled, so the thread and the connection come back."""
        if job.taken and not job.future.done() and self.cancel_query is not None:
            self.background().run(request.cancel_queries, self.cancel_query)

    # In the thread --------------------------------------------------------------

    def respond(self, scope: Scope, body_file: Any, request: RequestState) -> Rendered:
        """Everything synchronous about one request. Returns the messages still to
        send and what is left of a file to send from the event loop."""
        request.databases = self.thread_connections()
        # asgiref adds the tasks it runs for this thread here (the async view, an
        # async stream), so they are cancelled when the client goes.
        SyncToAsync.threadlocal.task_context = request.tasks
        try:
            response = self._response(scope, body_file, request)
            if response is None:
                return NOTHING_TO_SEND
            return self._render(response, request)
        finally:
            SyncToAsync.threadlocal.task_context = None

    def _response(
        self, scope: Scope, body_file: Any, request: RequestState
    ) -> HttpResponseBase | None:
        """The request through the middleware chain and the view; None when it ended
        without a response to send (the client left first, or the view was cancelled)."""
        try:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=ASGIHandler, scope=scope)
            if request.gone:  # the client left before its view could start: no view
                body_file.close()
                request.finish(signals.request_finished.send, sender=ASGIHandler)
                return None
            response: Any
            django_request, response = self.create_request(scope, body_file)
            if django_request is None:
                body_file.close()
            else:
                response = self.get_response(django_request)
                # Closed with the response, after the request, as Django's own handler
                # closes it: closing the request closes only the stream it reads now.
                response._resource_closers.append(body_file.close)
        except asyncio.CancelledError:
            # The async view was cancelled (the client left, or the request timed
            # out): Django's handler then ends the request the same way.
            body_file.close()
            request.finish(signals.request_finished.send, sender=ASGIHandler)
            return None
        response._handler_class = ASGIHandler  # request_finished's sender, as Django's
        made: HttpResponseBase = response
        return made

    def _render(self, response: Any, request: RequestState) -> Rendered:
        """The response's messages; a stream is sent from here as it is made. The
        response is closed in this thread, whatever happens (a file's own closers
        wait for the file to be sent: :class:`.streaming.FileParts`)."""
        try:
            start = self.response_start(response)
            if not response.streaming:
                return [start, {"type": "http.response.body", "body": response.content}], None
            if isinstance(response, FileResponse) and not response.is_async:
                response.block_size = self.chunk_size
                return self._read_file(response, start)
            try:
                if response.is_async:
                    # The stream may run long: it does not hold one of the fixed pool's threads.
                    threads.leave_pool()
                    # Again: asgiref sets its own list here when it runs a view's
                    # sync_to_async call in this thread.
                    SyncToAsync.threadlocal.task_context = request.tasks
                    async_to_sync(send_async_stream)(response, start, request.send)
                else:
                    self._stream(response, start, request)
            except asyncio.CancelledError:  # the client left, or the stream was cut
                pass
            return NOTHING_TO_SEND
        finally:
            request.finish(response.close)

    @staticmethod
    def _stream(response: HttpResponseBase, start: Message, request: RequestState) -> None:
        """A synchronous streaming response: each part handed to the event loop as
        it is made, until the client is gone or the response is cut."""
        outbox = request.outbox()
        if not outbox.put(start):
            return
        for part in response:
            if part and not outbox.put(
                {"type": "http.response.body", "body": part, "more_body": True}
            ):
                return
        if outbox.put({"type": "http.response.body", "body": b"", "more_body": False}):
            outbox.wait_sent()

    @staticmethod
    def _read_file(response: HttpResponseBase, start: Message) -> Rendered:
        """A file: up to ``BUFFER_BYTES`` read here; the rest is read and sent from
        the event loop, so a client that reads slowly holds no thread."""
        pending: list[Message] = [start]
        buffered = 0
        parts = iter(response)
        for part in parts:
            if not part:
                continue
            pending.append({"type": "http.response.body", "body": part, "more_body": True})
            buffered += len(part)
            if buffered >= BUFFER_BYTES:
                return pending, FileParts(parts, response)
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


def _cancelling() -> bool:
    """Whether the task at hand has been asked to stop (not just a future it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
