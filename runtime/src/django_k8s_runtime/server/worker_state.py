"""What the running worker knows and the request stack needs, read at request time.

The composition root (``asgi.py``) builds the stack once; with
``GUNICORN_PRELOAD`` that is in the master, before any worker exists. What only a
running worker knows (Gunicorn's effective timeout and threads, whether this
worker has begun to stop) cannot be handed to the stack as a value then. It is
handed over as this object's methods instead, which read what the worker fills in
when it starts serving (:meth:`WorkerState.serving`). ``asgi.py`` shows the wiring:
``RequestTimeout(..., seconds=this_worker.request_timeout)`` and
``Probes(..., draining=this_worker.is_draining)``.

Outside our worker (plain ``uvicorn``), nothing fills it in: requests are not
bounded here, and only the pod's drain counts.

What a worker does on a timer (publish its saturation gauges, check its memory)
is registered with :meth:`WorkerState.every` and runs on its event loop once it
serves: once a second costs nothing a request would notice, where the same work
per request would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from django_k8s_runtime.server import drain

logger = logging.getLogger(__name__)


def _never() -> bool:
    return False


class WorkerState:
    def __init__(self, pod_draining: Callable[[], bool] = drain.has_begun) -> None:
        self._pod_draining = pod_draining
        self._request_timeout: float | None = None
        self._threads: int | None = None
        self._connections: int | None = None
        self._stopping: Callable[[], bool] = _never
        self._on_connection_dropped: Callable[[str], None] | None = None
        self._on_serving: list[Callable[[], None]] = []
        self._periodic: list[tuple[float, Callable[[], None]]] = []
        self._on_finished: list[Callable[[], None]] = []
        self._recycle: Callable[[str, str], None] | None = None

    def serving(
        self,
        *,
        request_timeout: float,
        threads: int,
        stopping: Callable[[], bool],
        connections: int | None = None,
        recycle: Callable[[str, str], None] | None = None,
    ) -> None:
        """Called by the worker as it starts serving: Gunicorn's effective ``timeout``
        and ``threads`` (GUNICORN_TIMEOUT and GUNICORN_THREADS, or ``--timeout`` and
        ``--threads`` in GUNICORN_CMD_ARGS, so Gunicorn and the stack always agree),
        and how to tell that this worker has begun its own graceful exit (recycling,
        reload): Uvicorn's ``should_exit``."""
        self._request_timeout = request_timeout
        self._threads = threads
        self._connections = connections
        self._stopping = stopping
        self._recycle = recycle
        for callback in self._on_serving:
            callback()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (a test): no timers
            return
        for seconds, callback in self._periodic:
            _repeat(loop, seconds, callback)

    def when_serving(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` in the worker once it knows what it serves with (before
        its first request), e.g. to bound database sessions by its request timeout."""
        self._on_serving.append(callback)

    def every(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the worker's event loop as it starts serving and then
        every ``seconds``, for as long as the loop runs (draining included), and once
        more when it has finished serving (:meth:`finished`), so what it publishes is
        complete. It must be quick: the loop serves every request."""
        self._periodic.append((seconds, callback))

    def when_finished(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the worker has served its last request."""
        self._on_finished.append(callback)

    def recycle(self, cause: str, why: str) -> None:
        """Have the worker finish its requests and be replaced, as for memory:
        ``cause`` for the master's count of exits, ``why`` for the log."""
        if self._recycle is not None:
            self._recycle(cause, why)

    def finished(self) -> None:
        """Called by the worker when it has served its last request, before it exits."""
        for callback in [*(callback for _, callback in self._periodic), *self._on_finished]:
            try:
                callback()
            except Exception:
                logger.exception("a periodic task of the worker failed at its end")

    def request_timeout(self) -> float | None:
        """Seconds a request may take; None where no worker of ours set it."""
        return self._request_timeout

    def threads(self) -> int | None:
        """Threads for synchronous views; None where no worker of ours set it."""
        return self._threads

    def connections(self) -> int | None:
        """Connections (and requests) the worker holds at once: Gunicorn's
        ``worker_connections``; None where no worker of ours set it."""
        return self._connections

    def count_dropped_connections(self, callback: Callable[[str], None]) -> None:
        """Have ``callback(reason)`` told of each connection the server drops or
        answers itself (the metrics count them)."""
        self._on_connection_dropped = callback

    def connection_dropped(self, reason: str) -> None:
        """A connection was closed or refused before the application saw a request:
        ``head_timeout``, ``head_too_large``, ``malformed``, ``send_timeout``,
        ``idle_evicted``, ``body_too_slow``, ``pipeline_full``."""
        if self._on_connection_dropped is not None:
            self._on_connection_dropped(reason)

    def is_draining(self) -> bool:
        """The pod is going away (the master's SIGTERM), or this worker is stopping."""
        return self._pod_draining() or self._stopping()


def _repeat(loop: asyncio.AbstractEventLoop, seconds: float, callback: Callable[[], None]) -> None:
    """A timer, not a task: the worker waits for its tasks when it stops, not for this."""

    failing = False

    def tick() -> None:
        nonlocal failing
        try:
            callback()
            failing = False
        except Exception:
            if not failing:  # one line when it starts failing, not one a second
                logger.exception("a periodic task of the worker failed (it keeps running)")
            failing = True
        loop.call_later(seconds, tick)

    tick()


this_worker = WorkerState()  # one per process; a forked worker fills in its own copy
