"""/health and /health/live as a small ASGI application in front of Django.

The kubelet calls probes with the pod IP as Host, over plain http, many times a
minute. Answering them before Django means: any Host is fine (ALLOWED_HOSTS still
guards every other path), no https redirect, no session, CSRF, auth or locale
work, no slash redirects, and no thread: the probe runs on the event loop, so it
answers even while every thread running synchronous views is busy.

* ``/health/live`` (liveness) answers 200 as long as the event loop does. It
  never touches a dependency: a database outage must not restart every pod.
* ``/health`` (readiness) answers 200 when the application is loaded, the
  configured checks pass and the server is not shutting down; 503 otherwise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from health.checks import Check, CheckResult

LIVE_PATHS = frozenset({"/health/live", "/health/live/"})
READY_PATHS = frozenset({"/health", "/health/"})
PATHS = LIVE_PATHS | READY_PATHS

_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
]


def is_probe(scope: dict[str, Any]) -> bool:
    return scope["type"] == "http" and scope["path"] in PATHS


class Probes:
    """Serve the probes; hand every other request to ``app``."""

    def __init__(
        self,
        app: Any,
        checks: Sequence[Check],
        *,
        draining: Callable[[], bool],
        on_readiness: Callable[[bool, list[tuple[str, bool]]], None] | None = None,
    ) -> None:
        self.app = app
        self.checks = list(checks)
        self.draining = draining  # asked at each readiness probe
        self.on_readiness = on_readiness  # e.g. metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not is_probe(scope):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(
                send, scope, 405, {"status": "method not allowed"}, extra=[(b"allow", b"GET, HEAD")]
            )
            return
        if scope["path"] in LIVE_PATHS:
            await _respond(send, scope, 200, {"status": "ok"})
            return
        status, body = await self.readiness()
        await _respond(send, scope, status, body)

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        results: list[CheckResult] = list(
            await asyncio.gather(*(check.run() for check in self.checks))
        )
        draining = self.draining()
        ready = not draining and all(result.ok for result in results)
        if self.on_readiness is not None:
            self.on_readiness(ready, [(result.name, result.ok) for result in results])
        body: dict[str, Any] = {
            "status": "ok" if ready else ("shutting down" if draining else "unavailable"),
            "checks": [
                {"name": r.name, "ok": r.ok, "duration_ms": round(r.duration_ms, 2)}
                for r in results
            ],
        }
        return (200 if ready else 503), body


async def _respond(
    send: Any,
    scope: dict[str, Any],
    status: int,
    body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    headers = [*_HEADERS, (b"content-length", str(len(payload)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload}
    )
