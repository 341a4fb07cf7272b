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


class RequestTimeout:
    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.seconds:
            await self.app(scope, receive, send)
            return

        expired = asyncio.Event()
        response_started = False

        async def receive_until_expired() -> dict[str, Any]:
            if expired.is_set():
                return {"type": "http.disconnect"}
            message = asyncio.ensure_future(receive())
            deadline = asyncio.ensure_future(expired.wait())
            done, _ = await asyncio.wait({message, deadline}, return_when=asyncio.FIRST_COMPLETED)
            if message in done:
                deadline.cancel()
                return message.result()
            message.cancel()
            return {"type": "http.disconnect"}

        async def send_until_expired(message: dict[str, Any]) -> None:
            nonlocal response_started
            if expired.is_set():
                return  # the client already has its 504
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive_until_expired, send_until_expired))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.seconds)
            return
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            task.cancel()
            raise

        expired.set()
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
