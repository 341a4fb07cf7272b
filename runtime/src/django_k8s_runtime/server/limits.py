"""How large a request may be: its head (in the HTTP protocol) and its body (here).

Uvicorn's worker ignores Gunicorn's ``limit_request_*`` settings and httptools has
no limit of its own, so a single 64 MB header line was read into memory; and
Django's ASGI handler reads a whole body, spooling it to a temporary file, before
any middleware or view could refuse it. Both are a denial of service from
anyone who can reach the pod.

* :class:`HeadLimits` are Gunicorn's three settings, applied as Gunicorn applies
  them (``gunicorn/http/message.py``), by :mod:`server.protocol` before the
  application sees the request: 414 for the request line, 431 for the header
  fields, and the connection closed.
* :class:`BodyLimit` is an ASGI layer in front of Django: a ``Content-Length``
  over the limit is answered 413 before a byte of the body reaches the
  application, a chunked body as soon as it passes the limit; the application
  reads no further (it sees the client leave). The 413 names the variable and
  its value, carries the project's security headers, and reaches the client:
  the rest of the body is read and thrown away for a while before the
  connection is closed, as nginx's lingering close does (below).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import markcoroutinefunction
from typing import Any

from django_k8s_runtime.asgi_types import DEADLINE, ASGIApp, Headers, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# Gunicorn's bounds (gunicorn/http/message.py).
MAX_REQUEST_LINE = 8190
MAX_HEADERS = 32768
DEFAULT_MAX_HEADERFIELD_SIZE = 8190
UNLIMITED_REQUEST_LINE = 1024 * 1024  # what Gunicorn's own parser uses for 0


@dataclass(frozen=True)
class HeadLimits:
    request_line: int = 4094
    fields: int = 100
    field_size: int = 8190

    @classmethod
    def from_gunicorn(cls, cfg: Any) -> HeadLimits:
        """Gunicorn's effective settings, normalised exactly as Gunicorn does."""
        line = cfg.limit_request_line
        if line < 0 or line >= MAX_REQUEST_LINE:
            line = MAX_REQUEST_LINE
        elif line == 0:
            line = UNLIMITED_REQUEST_LINE
        fields = cfg.limit_request_fields
        if fields <= 0 or fields > MAX_HEADERS:
            fields = MAX_HEADERS
        field_size = cfg.limit_request_field_size
        if field_size <= 0:
            field_size = DEFAULT_MAX_HEADERFIELD_SIZE
        return cls(line, fields, field_size)

    @property
    def head_bytes(self) -> int:
        """The most a whole request head can take: the line and every field, with
        their line ends. More than this, and some limit is exceeded already."""
        return self.request_line + 2 + self.fields * (self.field_size + 2) + 2


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may hold of a worker, and for how long.

    * ``head_timeout``: seconds for a whole request head, from the connection's
      start or the head's first byte (REQUEST_HEAD_TIMEOUT); then 408.
    * ``send_timeout``: seconds a client may take none of a response before it is
      disconnected (RESPONSE_SEND_TIMEOUT), as nginx's ``send_timeout``.
    * ``connections``: connections a worker keeps (Gunicorn's ``worker_connections``);
      past it, idle keep-alive connections are closed to make room.
    * ``body_min_rate``: bytes a second a request body must average once
      ``body_grace`` seconds have passed (REQUEST_BODY_MIN_RATE, REQUEST_BODY_GRACE);
      then 408. 0: no minimum.
    """

    head_timeout: float = 10.0
    send_timeout: float = 10.0
    connections: int = 1000
    body_min_rate: int = 240
    body_grace: float = 5.0


STATUS_LINES = {
    400: b"HTTP/1.1 400 Bad Request\r\n",
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    413: b"HTTP/1.1 413 Content Too Large\r\n",
    414: b"HTTP/1.1 414 URI Too Long\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


def refusal(status: int, message: str) -> bytes:
    """A whole response that closes the connection, for a request the application
    never sees."""
    body = message.encode("ascii") + b"\n"
    return b"".join(
        [
            STATUS_LINES[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


# How long the rest of a refused body is read and thrown away, as nginx's lingering
# close: at most LINGER_SECONDS in all (nginx's lingering_time, 30 s), and no more
# than LINGER_WAIT_SECONDS for each part (its lingering_timeout, 5 s). A client
# that writes its whole body before it reads (Python's http.client, curl without
# Expect) then reads the 413; a server that closes with a body still arriving
# makes the kernel reset the connection, and the client sees an error instead.
LINGER_SECONDS = 30.0
LINGER_WAIT_SECONDS = 5.0
DEADLINE_MARGIN_SECONDS = 0.5  # the lingering ends before the request's deadline
DISCONNECT: Message = {"type": "http.disconnect"}


class BodyLimit:
    """Answer 413 for a request body larger than ``max_bytes``.

    Only a body of unknown length is counted as it arrives: one that declares its
    length within the limit goes to ``app`` as it is (HTTP/1.1's parser reads no
    more than that), as does an HTTP/1 request that declares neither a length nor
    chunks (it has no body), the application's own awaitable handed back, with no
    coroutine of this layer on its way.

    ``headers(scope)`` gives the headers the project's responses carry (its
    security headers: ``server/security_headers.py``), added to the 413."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        headers: Callable[[Scope], Headers] | None = None,
        linger_seconds: float = LINGER_SECONDS,
        linger_wait_seconds: float = LINGER_WAIT_SECONDS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.headers = headers
        self.linger_seconds = linger_seconds
        self.linger_wait_seconds = linger_wait_seconds
        self.limit = f"REQUEST_MAX_BODY_SIZE={max_bytes} bytes{_in_mib(max_bytes)}"
        self.body = json.dumps({"error": f"request body too large: over {self.limit}"}).encode()

    @markcoroutinefunction
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        declared, chunked = _framing(scope)
        if declared is not None and not chunked:
            if declared > self.max_bytes:
                return self._refuse_declared(scope, receive, send, declared)
            return self.app(scope, receive, send)
        if not chunked and scope.get("http_version") in ("1.0", "1.1"):
            return self.app(scope, receive, send)
        return self._counted(scope, receive, send)

    async def _refuse_declared(
        self, scope: Scope, receive: Receive, send: Send, declared: int
    ) -> None:
        self._log(scope, f"Content-Length {declared}")
        await self._answer(scope, send)
        await self._discard_the_rest(scope, receive)
        await send(_END)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        cut = False  # the application is told the client left; nothing more reaches it
        answered = False  # the 413 is out, but for its end
        more_to_come = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, cut, answered, more_to_come
            if cut:
                return DISCONNECT
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    cut = True
                    more_to_come = message.get("more_body", False)
                    if not response_started:
                        answered = True
                        self._log(scope, f"more than {self.max_bytes} bytes, chunked,")
                        await self._answer(scope, send)
                    return DISCONNECT  # the application stops reading
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if cut:
                return  # the client has its 413, or was cut off mid-answer
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
        if answered:
            if more_to_come:
                await self._discard_the_rest(scope, receive)
            await send(_END)

    def _log(self, scope: Scope, what: str) -> None:
        logger.warning(
            "request body refused with 413: %s is over %s: %s %s",
            what,
            self.limit,
            scope.get("method", ""),
            scope.get("path", ""),
        )

    async def _answer(self, scope: Scope, send: Send) -> None:
        """The 413 whole but for its end: the server closes the connection when the
        response ends, which waits until the body has stopped arriving."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self.body)),
            (b"connection", b"close"),
            *(self.headers(scope) if self.headers is not None else ()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})

    async def _discard_the_rest(self, scope: Scope, receive: Receive) -> None:
        """Read what is left of the body and drop it, within the lingering's bounds
        and before the request's deadline (``server/timeout.py``)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.linger_seconds
        deadline = getattr(scope.get(DEADLINE), "at", None)
        if deadline is not None:
            until = min(until, deadline - DEADLINE_MARGIN_SECONDS)
        while (left := until - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(left, self.linger_wait_seconds)):
                    message = await receive()
            except TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def _in_mib(size: int) -> str:
    return f" ({size / MIB:g} MiB)" if size >= MIB else ""


MIB = 1024 * 1024


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The body's declared length, if any, and whether it comes in chunks."""
    length = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):  # the HTTP parser refused such a one
                length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked
