"""A streaming response, from the request's thread to the client.

* **A synchronous iterator** is read in the request's thread, which ran the view
  (it may hold a database cursor of that thread's connection). Each part goes to
  an :class:`Outbox` and the event loop sends it as soon as it can, the head
  first: the client sees the head at once and each part as it is made (server-sent
  events), as under Django's handler. The thread waits only while ``BUFFER_BYTES``
  are unsent (a client that reads slowly holds it back), and stops reading the
  iterator once the client is gone or the response is cut.
* **A file** (``FileResponse``) is read ``BUFFER_BYTES`` at a time in the
  background pool and sent from the event loop (:func:`send_file_rest`): a client
  that reads slowly holds no thread.
* **An async iterator** (:func:`send_async_stream`) runs on the event loop, driven
  from the request's thread with ``async_to_sync``: what it hands to
  ``sync_to_async`` (the ORM) runs in that thread, with that thread's connections,
  and the thread ends the request when the stream ends. Under Django's handler the
  request's thread-sensitive context plays that part.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from django_k8s_runtime.asgi_types import Message, Send

BUFFER_BYTES = 256 * 1024
_CHUNK_BYTES = 64 * 1024  # the largest body message of an async stream, as Django's


class Outbox:
    """Messages of one response, put in by the request's thread and sent in order
    by the event loop. ``on_first`` is called on the loop when the first arrives
    (the request then starts watching for its client going away)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, send: Send, on_first: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._send = send
        self._on_first: Callable[[], None] | None = on_first
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[Message] = deque()
        self._unsent = 0  # body bytes put in and not yet sent
        self._sending: asyncio.Task[None] | None = None
        self._draining = False  # a task on the loop is sending, or is about to
        self.closed = False

    # In the thread -----------------------------------------------------------------

    def put(self, message: Message) -> bool:
        """Hand ``message`` over; wait while too much is unsent. False once the
        response will not be sent on (the client is gone, the response was cut)."""
        with self._lock:
            if self.closed:
                return False
            self._queue.append(message)
            self._unsent += len(message.get("body", b""))
            if not self._draining:
                try:
                    self._loop.call_soon_threadsafe(self._start_sending)
                except RuntimeError:  # the loop has closed: no one will send it
                    self.closed = True
                    return False
                self._draining = True
            while self._unsent > BUFFER_BYTES and not self.closed:
                self._changed.wait()
            return not self.closed

    def wait_sent(self) -> bool:
        """Wait until everything put in has been sent; False if it will not be."""
        with self._lock:
            while self._draining and not self.closed:
                self._changed.wait()
            return not self.closed

    # On the event loop -------------------------------------------------------------

    def close(self) -> None:
        """Send nothing more; a thread waiting in :meth:`put` is let go at once."""
        with self._lock:
            self.closed = True
            self._queue.clear()
            self._changed.notify_all()

    def _start_sending(self) -> None:
        if self._on_first is not None:
            self._on_first()
            self._on_first = None
        self._sending = self._loop.create_task(self._send_queued())

    async def _send_queued(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._draining = False
                        self._changed.notify_all()
                        return
                    message = self._queue.popleft()
                await self._send(message)
                size = len(message.get("body", b""))
                if size:
                    with self._lock:
                        self._unsent -= size
                        if self._unsent <= BUFFER_BYTES:
                            self._changed.notify_all()
        except BaseException:
            self.close()  # the server failed the send, or the worker is stopping
            raise
        finally:
            self._sending = None


class FileParts:
    """What is left of a ``FileResponse`` once its first ``BUFFER_BYTES`` are read.

    The response itself is closed in its thread as usual (``request_finished``:
    the request's database connections go back to the pool); only the file's own
    closers are kept, to run when the file has been sent."""

    def __init__(self, parts: Iterator[bytes], response: Any) -> None:
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


async def send_file_rest(
    rest: FileParts,
    send: Send,
    gone: Callable[[], bool],
    run_in_thread: Callable[..., asyncio.Future[Any]],
) -> None:
    """The rest of a file: read in the background pool, ``BUFFER_BYTES`` at a
    time, sent as the client takes it, until ``gone()``."""
    try:
        more = True
        while more:
            parts, more = await run_in_thread(rest.read, BUFFER_BYTES)
            for part in parts:
                if gone():
                    return
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await run_in_thread(rest.close)


async def send_async_stream(response: Any, start: Message, send: Send) -> None:
    """A response over an async iterator, on the event loop: the head, then each
    part as it comes (in pieces of at most 64 KiB, as Django's handler sends them)."""
    await send(start)
    async with contextlib.aclosing(aiter(response)) as content:
        async for part in content:
            for offset in range(0, len(part), _CHUNK_BYTES) if part else ():
                chunk = part[offset : offset + _CHUNK_BYTES]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
