"""/metrics, served on its own port (METRICS_PORT, a second Gunicorn listener) and
nowhere else: the public port never answers it, and the Service does not expose the
metrics port. prometheus_client renders it (``make_asgi_app``: the text or
OpenMetrics format as the scraper asks, gzip if it accepts it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from inspect import markcoroutinefunction
from typing import TYPE_CHECKING, Any

from django_k8s_runtime.asgi_types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class MetricsEndpoint:
    """Answer /metrics on the metrics port; pass everything else on the other ports.

    ``before_scrape`` runs before each scrape (e.g. records readiness, so
    ``app_ready`` is current); prometheus_client renders the registry."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int,
        registry: CollectorRegistry,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        from prometheus_client import make_asgi_app

        self.app = app
        self.port = port
        self.before_scrape = before_scrape
        self.exposition = make_asgi_app(registry)

    @markcoroutinefunction
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        server = scope.get("server")
        if scope["type"] != "http" or not server or server[1] != self.port:
            return self.app(scope, receive, send)  # no coroutine of ours on its way
        return self._serve(scope, receive, send)

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        head = scope["method"] == "HEAD"
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            await _not_found(send, head=head)
            return
        if self.before_scrape is not None:
            await self.before_scrape()
        await self.exposition(scope, receive, _complete_headers(send, head=head))


def _complete_headers(send: Any, *, head: bool) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """prometheus_client sends the start, then the whole body in one message: hold the
    start until the body's length is known, and forbid caching the numbers."""
    started: list[dict[str, Any]] = []

    async def send_complete(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message)
            return
        start = started.pop()
        body = message.get("body", b"")
        headers = [
            *((name.lower(), value) for name, value in start.get("headers", ())),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({**start, "headers": headers})
        await send({**message, "body": b"" if head else body})

    return send_complete


async def _not_found(send: Any, *, head: bool) -> None:
    body = b"not found: only /metrics here\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
