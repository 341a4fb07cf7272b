"""ASGI's shapes, named, and the one small response every layer that answers for
itself sends (a probe, a 413, a 503, a 504, a refused handshake).

The one module the layers (server/, health/, observability/) share: it imports
nothing of the runtime, so sharing it adds no arrow between them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

Scope = dict[str, Any]  # a layer may record in it (the route, the deadline)
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

# What the layers record in an HTTP request's scope for one another (the contract
# between them; a layer reads only these names, never a string of its own).
ROUTE = "route"  # str: the URL pattern that answered (the probes, Django's middleware)
DEADLINE = "deadline"  # server.timeout.Deadline: when the request must be answered
CLIENT_GONE = "client_gone"  # True once the client has gone (the HTTP protocol)
CLIENT_ERROR = "client_error"  # int: the client's fault the server answered (400)
ENDED_EARLY = "ended_early"  # str: why a response that began was cut (below)

# Why a response whose head went out did not end as the application meant it to:
# the status recorded stays the status sent, with one of these beside it.
CLIENT_LEFT = "client_gone"  # the client went away
SEND_TIMEOUT = "send_timeout"  # the client took none of it for RESPONSE_SEND_TIMEOUT
STALLED = "stalled"  # the application sent nothing for GUNICORN_TIMEOUT
FAILED = "error"  # the application raised


class Deadline(Protocol):
    """``scope[DEADLINE]`` as the layers inside the request timeout see it."""

    @property
    def at(self) -> float:
        """When the request must have been answered, on the event loop's clock."""
        ...

    def on_expiry(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop if the request is cut at its deadline."""
        ...


async def send_json(
    send: Send,
    status: int,
    body: Mapping[str, Any] | bytes,
    *,
    headers: Headers = (),
    head: bool = False,
    websocket: bool = False,
) -> None:
    """A whole JSON response: ``body`` (encoded if a mapping) with its length,
    ``headers`` after those two; no body bytes for a HEAD request. ``websocket``
    answers a handshake with it instead (the ``websocket.http.response``
    extension's messages)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = "websocket.http.response" if websocket else "http.response"
    start = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(payload)),
        *headers,
    ]
    await send({"type": f"{kind}.start", "status": status, "headers": start})
    await send({"type": f"{kind}.body", "body": b"" if head else payload})
