"""Bound how long a request may take, as ``GUNICORN_TIMEOUT`` promises.

For async workers Gunicorn's own ``timeout`` only bounds how long a worker's
event loop may go without a heartbeat; a slow request on a healthy loop runs
forever. This ASGI middleware answers 504 when a request has not begun its
response within the timeout. A body that arrives in parts is the client's time, not
the view's: the timeout counts from when it is whole (its pace is bounded by the
protocol's ``REQUEST_BODY_MIN_RATE``).

**Streams.** Once the response's head is out, the timeout bounds the time between
two of its parts, not the whole: a stream that keeps producing (server-sent
events, a long export) is never cut, as under Uvicorn, gthread or any other
server; one that sends nothing for the timeout is cut (``stalled``) and recorded
with the status it sent, never as a 504. A client that stops reading is the
HTTP protocol's to cut (``RESPONSE_SEND_TIMEOUT``).

It stops the application the way a vanishing client would: ``receive()`` starts
returning ``http.disconnect``, which Django (and Starlette) answer by cancelling
the view. Only an application that ignores that is cancelled outright, after a
short grace. A synchronous view's thread cannot be killed; it finishes in the
background and its response is dropped.

The common case, a request that finishes in time, costs one timer: no extra
task per request, nothing per ``receive()``.

The request's :class:`RequestDeadline` is in the scope (``scope[DEADLINE]``) for
the layers inside, as ``asgi_types.Deadline`` describes it: when it falls, and
:meth:`RequestDeadline.on_expiry` for work that must stop with the request (the
handler cancels a timed-out view's database query).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from django_k8s_runtime.asgi_types import (
    DEADLINE,
    ENDED_EARLY,
    STALLED,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    send_json,
)

logger = logging.getLogger(__name__)

GRACE_SECONDS = 1.0
# Set in the request's task once its response was cut (stalled): the server then
# closes the connection, and its "returned without completing" line is ours to drop.
CUT = contextvars.ContextVar("django_k8s_runtime_response_cut", default=False)
BODY = b'{"error": "request timed out"}'
DISCONNECT: Message = {"type": "http.disconnect"}


class _Nothing:
    """An awaitable that is done at once, as often as it is awaited."""

    def __await__(self) -> Generator[Any, Any, None]:
        return iter(())  # type: ignore[return-value]


_NOTHING = _Nothing()


class RequestTimeout:
    """``seconds`` is asked at each request (the stack is built before the worker
    that knows the timeout exists; see ``server/worker_state.py``); None or 0 means
    unbounded. ``grace`` is how long an application that ignores the disconnect
    gets before it is cancelled outright."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        seconds: Callable[[], float | None],
        grace: float = GRACE_SECONDS,
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.grace = grace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = self.seconds()
        if scope["type"] != "http" or not seconds:
            await self.app(scope, receive, send)
            return
        deadline = RequestDeadline(scope, seconds, self.grace, receive, send)
        scope[DEADLINE] = deadline
        try:
            await self.app(scope, deadline.receive, deadline.send)
        except asyncio.CancelledError:
            if not deadline.cancelled_by_us():
                raise  # e.g. the server's own shutdown: not ours to swallow
        finally:
            deadline.disarm()
            if deadline.expired:
                if deadline.response_started:
                    scope.setdefault(ENDED_EARLY, STALLED)
                    CUT.set(True)
                await deadline.answered()
            deadline.release()


class RequestDeadline:
    """One request's deadline: what the application sees, and what happens at expiry."""

    _on_expiry: list[Callable[[], None]] | None = None
    _answer: asyncio.Task[None] | None = None
    _hard_cancel: asyncio.TimerHandle | None = None
    _hard_cancelled = False
    expired = False
    response_started = False

    def __init__(
        self, scope: Scope, seconds: float, grace: float, receive: Receive, send: Send
    ) -> None:
        # The method and path, not the scope: the scope holds this object, and a
        # cycle would leave every request's objects to the garbage collector.
        self._what = (scope.get("method", ""), scope.get("path", ""))
        self._loop = asyncio.get_running_loop()
        self.at = self._loop.time() + seconds  # on the event loop's clock
        self._seconds = seconds
        self._grace = grace
        self._receive = receive
        self._send = send
        self._last_sent = 0.0  # when the application last sent, once its head is out
        self._body_arriving = False  # part of a body came, the rest has not
        task = asyncio.current_task()
        assert task is not None  # a request runs in a task of the server's
        self._request_task = task
        self._receiving: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(self.at, self.expire)

    def _start_again(self) -> None:
        """The body came in parts: the timeout bounds the view from now."""
        if self._timer is not None:
            self._timer.cancel()
            self.at = self._loop.time() + self._seconds
            self._timer = self._loop.call_at(self.at, self.expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def receive(self) -> Message:
        if self.expired:
            return DISCONNECT
        task = asyncio.current_task()
        assert task is not None
        self._receiving.add(task)
        try:
            message = await self._receive()
            if message.get("more_body"):
                self._body_arriving = True
            elif self._body_arriving and message["type"] == "http.request":
                self._body_arriving = False
                self._start_again()  # the timeout counts from the whole body
            return message
        except asyncio.CancelledError:
            if task not in self._interrupted:
                raise
            self._interrupted.discard(task)
            task.uncancel()  # our interruption, not a real cancellation
            return DISCONNECT
        finally:
            self._receiving.discard(task)

    def send(self, message: Message) -> Awaitable[None]:
        """The server's ``send``'s awaitable (no coroutine of ours on its way), or,
        once expired, one that sends nothing: the client gets (or got) its 504."""
        if self.expired:
            return _NOTHING
        if self.response_started:
            self._last_sent = self._loop.time()
        elif message["type"] == "http.response.start":
            self.response_started = True
            self._last_sent = self._loop.time()
        return self._send(message)

    def on_expiry(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) if the deadline passes."""
        if self._on_expiry is None:
            self._on_expiry = []
        self._on_expiry.append(callback)

    def expire(self) -> None:
        """At the deadline: answer 504 now, and tell the application its client is
        gone. (A cancelled synchronous Django view returns only when its thread
        does, so the answer cannot wait for the application.) A response under way
        is cut only if it has sent nothing for the whole timeout."""
        self._timer = None
        if self.response_started:
            quiet_until = self._last_sent + self._seconds
            if quiet_until > self._loop.time():
                self._timer = self._loop.call_at(quiet_until, self.expire)
                return
        elif self._body_arriving and self._receiving:
            # The application waits for a body still on its way: the client's pace,
            # which REQUEST_BODY_MIN_RATE bounds, not the view's time.
            self._timer = self._loop.call_later(self._seconds, self.expire)
            return
        self.expired = True
        loop = self._loop
        for callback in self._on_expiry or ():
            try:
                callback()
            except Exception:
                logger.exception("a callback at the request's deadline failed")
        self._answer = loop.create_task(self._answer_504())
        for task in self._receiving:
            self._interrupted.add(task)
            task.cancel()
        self._hard_cancel = loop.call_later(self._grace, self._cancel_request)

    def _cancel_request(self) -> None:
        """The application ignored the disconnect: stop waiting for it."""
        self._hard_cancelled = True
        self._request_task.cancel()

    def cancelled_by_us(self) -> bool:
        """Whether the cancellation at hand is our hard cancel alone. One the server
        asked for too (its own shutdown) goes on: it is not ours to swallow."""
        if not self._hard_cancelled:
            return False
        return self._request_task.uncancel() == 0

    async def answered(self) -> None:
        """Once expired: wait for the 504 to be sent."""
        if self._hard_cancel is not None:
            self._hard_cancel.cancel()
        if self._answer is not None:
            await self._answer

    def release(self) -> None:
        """The request is over: let go of what it held (inner layers' callbacks hold
        the request's objects, and the scope still holds this deadline)."""
        self._on_expiry = None
        self._receive = self._send = self._request_task = None  # type: ignore[assignment]

    async def _answer_504(self) -> None:
        seconds = self._seconds
        method, path = self._what
        if self.response_started:
            # Headers are out: the status cannot change. The server closes the
            # connection, as the response never completed.
            logger.error(
                "response stalled: nothing sent for the %gs timeout, cut: %s %s",
                seconds,
                method,
                path,
            )
            return
        logger.error("request exceeded the %gs timeout, answered 504: %s %s", seconds, method, path)
        await send_json(self._send, 504, BODY, headers=[(b"connection", b"close")])
