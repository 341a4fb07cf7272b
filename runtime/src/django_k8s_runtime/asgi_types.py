"""ASGI's shapes, named, and the one small response every layer that answers for
itself sends (a probe, a 413, a 503, a 504, a refused handshake).

The one module the layers (server/, health/, observability/) share: it imports
nothing of the runtime, so sharing it adds no arrow between them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

Scope = dict[str, Any]  # a layer may record in it (the route, the deadline)
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]


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
