"""Whether, and how, the worker serves WebSockets: what the application asks.

The composition root calls :func:`serve_websockets` when the application has a
WebSocket part (``get_asgi_application(websocket=...)``); the worker then upgrades
handshakes with Uvicorn's ``websockets-sansio`` protocol as fitted in
:mod:`server.websocket_protocol`, with these limits (:func:`configure`). It is a
module-level request, not an attribute of the application, so that a project may
still wrap the application in middleware of its own (Sentry's, say).

An application without a WebSocket part keeps ``ws="none"``: an upgrade request
is served as plain HTTP, exactly as before the runtime served WebSockets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WebSocketSettings:
    max_message_bytes: int
    ping_interval: float | None  # None: no pings
    ping_timeout: float | None
    send_timeout: float = 10.0  # RESPONSE_SEND_TIMEOUT: a client that takes nothing is dropped


_requested: WebSocketSettings | None = None


def serve_websockets(settings: WebSocketSettings) -> None:
    """Upgrade handshakes, with these settings. Called where the application is
    built: in the master when it is preloaded (workers inherit it), else in the
    worker before it serves."""
    global _requested
    _requested = settings


def requested() -> WebSocketSettings | None:
    return _requested


def configure(config: Any) -> None:
    """Set Uvicorn's ``config`` (before it is loaded) for what the application asked."""
    settings = _requested
    if settings is None:
        config.ws = "none"
        return
    from django_k8s_runtime.server.websocket_protocol import GoingAwayWebSocketProtocol

    config.ws = functools.partial(GoingAwayWebSocketProtocol, send_timeout=settings.send_timeout)
    config.ws_max_size = settings.max_message_bytes
    config.ws_ping_interval = settings.ping_interval
    config.ws_ping_timeout = settings.ping_timeout
