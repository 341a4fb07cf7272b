"""What a WebSocket handshake must pass before the application decides on it, and
how long it may take.

* **The host check.** Django refuses a request for a host not in ``ALLOWED_HOSTS``
  (400, ``DisallowedHost``), but a WebSocket never reaches Django's request path:
  the handshake is checked here with Django's own ``validate_host``, and refused
  with 400 too.
* **A cap on open sockets per worker** (WEBSOCKET_MAX_CONNECTIONS): each costs
  memory for as long as it stays open, however idle. A handshake beyond the cap is
  answered 503 before the application sees it; the client retries, and a load
  balancer may send it to another pod.
* **The handshake's deadline.** An open socket may stay idle for hours, so
  GUNICORN_TIMEOUT, a request's deadline, does not apply to it; but deciding on
  the handshake is a request like any other: an application that has neither
  accepted nor refused within the timeout is cancelled and the client answered
  504, as :mod:`server.timeout` answers a slow HTTP request.

* **A path with no route** is answered 404, as Django answers an HTTP request for
  it, with the access line only: Channels' router raises ``ValueError`` for it,
  which Uvicorn logged with a traceback and answered 500.
* **The channel layer** (server/channel_layer.py): a handshake whose consumer
  cannot join its group is answered 503, and an open socket whose group's layer
  went away is closed with 1012 (service restart), without a traceback.

Refusals are HTTP responses (the ASGI ``websocket.http.response`` extension, which
Uvicorn offers), so a client sees why; where a server does not offer it, the
handshake is closed (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from django_k8s_runtime.asgi_types import ASGIApp, Message, Receive, Scope, Send, send_json
from django_k8s_runtime.server.channel_layer import SERVICE_RESTART, ChannelLayerUnavailable

logger = logging.getLogger(__name__)

HANDSHAKE_DECIDED = frozenset(
    {"websocket.accept", "websocket.close", "websocket.http.response.start"}
)


class HandshakeGuard:
    """``handshake_timeout`` is asked at each handshake (the worker knows it;
    ``server/worker_state.py``); None or 0 leaves handshakes unbounded."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[str],
        max_sockets: int,
        handshake_timeout: Callable[[], float | None],
    ) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)
        self.max_sockets = max_sockets
        self.handshake_timeout = handshake_timeout
        self.open = 0  # sockets (and handshakes) in this worker now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        hosts = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
        host = hosts[0] if len(hosts) == 1 else None  # none, or which one would count?
        if not self._host_allowed(host):
            logger.warning(
                "WebSocket refused: host %s is not in ALLOWED_HOSTS: %s",
                ", ".join(map(repr, hosts)) or "(none)",
                scope["path"],
            )
            await refuse(scope, send, 400, "host not allowed")
            return
        if self.open >= self.max_sockets:
            logger.warning(
                "WebSocket refused: %d sockets open, WEBSOCKET_MAX_CONNECTIONS=%d: %s",
                self.open,
                self.max_sockets,
                scope["path"],
            )
            await refuse(scope, send, 503, "too many open sockets")
            return
        self.open += 1
        try:
            await self._within_deadline(scope, receive, send)
        finally:
            self.open -= 1

    def _host_allowed(self, host: str | None) -> bool:
        from django.http.request import split_domain_port, validate_host

        if host is None:
            return False
        domain, _ = split_domain_port(host)
        return bool(domain) and validate_host(domain, self.allowed_hosts)

    async def _within_deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = self.handshake_timeout()
        task = asyncio.current_task()
        assert task is not None
        expired = decided = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(seconds, expire) if seconds else None

        async def send_in_time(message: Message) -> None:
            nonlocal decided
            if expired:
                return  # the client has its 504
            if message["type"] in HANDSHAKE_DECIDED:
                decided = True
                if timer is not None:
                    timer.cancel()  # from here on the socket may idle as long as it likes
            await send(message)

        try:
            await self.app(scope, receive, send_in_time)
        except asyncio.CancelledError:
            if not expired or task.uncancel() > 0:
                raise  # not (only) ours: the server's own shutdown, say
            logger.error(
                "WebSocket handshake exceeded the %gs timeout, answered 504: %s",
                seconds,
                scope["path"],
            )
            await refuse(scope, send, 504, "handshake timed out")
        except ChannelLayerUnavailable:
            # One line when the layer went away (server/channel_layer.py); here the
            # socket's answer, and its access line.
            if decided:
                with contextlib.suppress(OSError, RuntimeError):  # gone, or closed already
                    await send({"type": "websocket.close", "code": SERVICE_RESTART})
            else:
                await refuse(scope, send, 503, "channel layer unavailable")
        except Exception as error:
            if decided or not _no_route(error):
                raise
            await refuse(scope, send, 404, "no such socket")  # the access line says which
        finally:
            if timer is not None:
                timer.cancel()


def _no_route(error: Exception) -> bool:
    """Channels' ``URLRouter`` found no route for the path (a ValueError, or Django's
    Resolver404 from a nested router)."""
    from django.urls import Resolver404

    return isinstance(error, ValueError | Resolver404) and str(error).startswith(
        "No route found for path"
    )


async def refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Answer the handshake with an HTTP error instead of a socket."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403
        return
    await send_json(send, status, {"error": reason}, websocket=True)
