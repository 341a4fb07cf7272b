"""One request as the event loop and its thread share it.

**Whether the client is still there.** The runtime's HTTP protocol marks the scope
the moment a connection is lost (``scope[CLIENT_GONE]``), at no cost per request.
Under any other server, and wherever a disconnect must *act* (an async view or a
stream to cancel, a request queued for a thread to withdraw), a task watches
``receive()`` for ``http.disconnect``, as Django's handler does for every request.
The request timeout looks the same as a client going away (server/timeout.py).

When the client goes, the request stops where it can: a request still queued for
a thread is withdrawn (its view never runs), the async view or the async stream is
cancelled, a synchronous stream stops being read; a synchronous view that is
running cannot be stopped, and its response is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from django_k8s_runtime.asgi_types import CLIENT_GONE, Message, Receive, Scope, Send
from django_k8s_runtime.server.streaming import Outbox
from django_k8s_runtime.server.threads import Job, ThreadPool

logger = logging.getLogger(__name__)


class RequestState:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.loop = loop
        self.scope = scope
        self.send = send
        self._receive = receive
        self._gone = False  # set on the event loop, read by the thread
        self._watch: asyncio.Task[None] | None = None
        self._job: Job | None = None
        self._pool: ThreadPool | None = None
        self.tasks: list[asyncio.Task[Any]] = []  # asgiref adds the async view's and stream's
        self._outbox: Outbox | None = None
        self.withdrawn = False  # the client left before a thread took the request
        self.gave_up = False  # no thread came free in time: answered 503
        self.databases: list[Any] = []  # the thread's Django connections
        self._finished = False  # the thread is giving its connections back
        self._lock = threading.Lock()

    @property
    def gone(self) -> bool:
        return self._gone or self.scope.get(CLIENT_GONE, False)

    # On the event loop -------------------------------------------------------------

    def running(self, job: Job, pool: ThreadPool) -> None:
        """The request was handed to ``pool`` as ``job``: withdrawn if the client
        leaves before a thread takes it."""
        self._job, self._pool = job, pool

    def watch(self) -> None:
        """Watch for the client going away (once; the task ends with the request)."""
        if self._watch is None:
            self._watch = self.loop.create_task(self._watch_disconnect())

    async def _watch_disconnect(self) -> None:
        message = await self._receive()
        if message["type"] != "http.disconnect":
            # As Django's handler: a server that sends more than the body is broken.
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")
        self.client_left()

    def client_left(self) -> None:
        self._gone = True
        if self._job is not None and self._pool is not None and self._pool.withdraw(self._job):
            self.withdrawn = True
        for task in self.tasks:
            task.cancel()
        if self._outbox is not None:
            self._outbox.close()

    def give_up(self) -> None:
        """The request waited its share of the deadline and no thread came free."""
        if self._job is not None and self._pool is not None and self._pool.withdraw(self._job):
            self.gave_up = True

    def cancel_tasks(self) -> None:
        for task in self.tasks:
            task.cancel()

    def forget(self) -> None:
        """The request is over on the event loop (sent, failed or cancelled). A watch
        that found the server broken fails the request, as under Django."""
        self._gone = True
        self._job = self._pool = None
        watch = self._watch
        if watch is None:
            return
        if watch.done() and not watch.cancelled() and watch.exception() is not None:
            raise watch.exception()  # type: ignore[misc]
        watch.cancel()

    # In the thread -----------------------------------------------------------------

    def outbox(self) -> Outbox:
        """Where the thread puts a synchronous stream's messages."""
        self._outbox = Outbox(self.loop, self.send, on_first=self.watch)
        if self.gone:
            self._outbox.close()
        return self._outbox

    def finish(self, close: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """End the request (``request_finished`` gives the database connections
        back), never while :meth:`cancel_queries` is cancelling one."""
        with self._lock:
            self._finished = True
        close(*args, **kwargs)

    # In a background thread, at the deadline -------------------------------------

    def cancel_queries(self, cancel: Callable[[Any], bool]) -> None:
        """Cancel what the request's thread runs in its databases, unless it has
        finished (its connections may serve another request by now)."""
        with self._lock:
            if self._finished:
                return
            for database in self.databases:
                try:
                    if cancel(database):
                        logger.warning(
                            "cancelled the query of a request past its deadline (database %s)",
                            database.alias,
                        )
                except Exception as error:
                    logger.warning(
                        "could not cancel a query (database %s): %s", database.alias, error
                    )


NOTHING_TO_SEND: tuple[list[Message], None] = ([], None)
