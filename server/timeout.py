"""Bound how long a request may take, as ``GUNICORN_TIMEOUT`` promises.

For async workers Gunicorn's own ``timeout`` only bounds how long a worker's
event loop may go without a heartbeat; a slow request on a healthy loop runs
forever. This ASGI middleware answers 504 when a request outlives the timeout.

It stops the application the way a vanishing client would: ``receive()`` starts
returning ``http.disconnect``, which Django (and Starlette) answer by cancelling
the view. Only an application that ignores that is cancelled outright, after a
short grace. A synchronous view's thread cannot be killed; it finishes in the
background and its response is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("server.timeout")

Scope = dict[str, Any]
GRACE_SECONDS = 1.0
BODY = b'{"error": "request timed out"}'

_worker_timeout: float | None = None


def use_worker_timeout(seconds: float) -> None:
    """Called by the worker with Gunicorn's effective ``timeout`` (GUNICORN_TIMEOUT, or
    a ``--timeout`` in GUNICORN_CMD_ARGS), so both bounds always agree."""
    global _worker_timeout  # one value per worker process
    _worker_timeout = seconds


class RequestTimeout:
    """``seconds`` defaults to the worker's timeout; outside our worker (e.g. plain
    ``uvicorn``) there is none and requests are not bounded here."""

    def __init__(self, app: Any, seconds: float | None = None) -> None:
        self.app = app
        self._seconds = seconds

    @property
    def seconds(self) -> float | None:
        return self._seconds if self._seconds is not None else _worker_timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.seconds:
            await self.app(scope, receive, send)
            return

        expired = asyncio.get_running_loop().create_future()
        response_started = False

        async def receive_until_expired() -> dict[str, Any]:
            if expired.done():
                return {"type": "http.disconnect"}
            message = asyncio.ensure_future(receive())
            try:
                await asyncio.wait({message, expired}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not message.done():  # expired, or our caller was cancelled
                    message.cancel()
            if message.cancelled():
                return {"type": "http.disconnect"}
            return message.result()

        async def send_until_expired(message: dict[str, Any]) -> None:
            nonlocal response_started
            if expired.done():
                return  # the client already has its 504
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        seconds = self.seconds
        task = asyncio.ensure_future(self.app(scope, receive_until_expired, send_until_expired))
        try:
            await asyncio.wait_for(asyncio.shield(task), seconds)
            return
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            task.cancel()
            raise

        expired.set_result(None)
        method, path = scope.get("method", ""), scope.get("path", "")
        if response_started:
            # Headers are out: the status cannot change. Stop streaming; the
            # server closes the connection when the application returns.
            logger.error(
                "request exceeded the %gs timeout while streaming: %s %s",
                self.seconds,
                method,
                path,
            )
        else:
            logger.error(
                "request exceeded the %gs timeout, answered 504: %s %s", self.seconds, method, path
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 504,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(BODY)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BODY})
        try:
            await asyncio.wait_for(task, GRACE_SECONDS)
        except (TimeoutError, asyncio.CancelledError):
            pass  # wait_for cancelled it: the application ignored the disconnect
        except Exception:
            logger.debug("application raised after its request timed out", exc_info=True)
