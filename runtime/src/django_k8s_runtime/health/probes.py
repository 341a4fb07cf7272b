"""The probes, /health and /health/live, as a small ASGI application in front of Django.

The kubelet calls probes with the pod IP as Host, over plain http, many times a
minute. Answering them before Django means: any Host is fine (ALLOWED_HOSTS still
guards every other path), no https redirect, no session, CSRF, auth or locale
work, no slash redirects, and no thread: the probe runs on the event loop, so it
answers even while every thread running synchronous views is busy.

* ``/health/live`` (liveness) answers 200 as long as the event loop does. It
  never touches a dependency: a database outage must not restart every pod.
* ``/health`` (readiness) answers 200 when the application is loaded, the
  configured checks pass and the server is not shutting down; 503 otherwise.

Like Django's routes (``observability/middleware.py``), a probe records its
route in the ASGI scope (``/health``, ``/health/live``), which is how the
request observer outside labels its metrics and knows a probe from a page.

Both paths are the defaults of ``HEALTH_PATH`` and ``HEALTH_LIVE_PATH``: answered
before Django, a probe hides any page of the project's at its path (a Wagtail
page with the slug ``health``), so a project can move them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from inspect import markcoroutinefunction
from typing import Any

from django_k8s_runtime.asgi_types import ROUTE, ASGIApp, Receive, Scope, Send, send_json
from django_k8s_runtime.health.checks import Check, CheckResult

LIVE_ROUTE, READY_ROUTE = "/health/live", "/health"  # the defaults
ROUTES = frozenset({LIVE_ROUTE, READY_ROUTE})

NO_STORE = [(b"cache-control", b"no-store")]
LIVE_BODY = b'{"status": "ok"}'  # json.dumps({"status": "ok"}), once


@dataclass(frozen=True)
class Readiness:
    """What /health answers now: ready, or why not."""

    draining: bool
    checks: list[CheckResult]

    @property
    def ready(self) -> bool:
        return not self.draining and all(check.ok for check in self.checks)

    @property
    def status(self) -> int:
        return 200 if self.ready else 503

    def body(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ready else ("shutting down" if self.draining else "unavailable"),
            "checks": [
                {"name": r.name, "ok": r.ok, "duration_ms": round(r.duration_ms, 2)}
                for r in self.checks
            ],
        }


class Probes:
    """Serve the probes at ``ready_path`` and ``live_path`` (and each with a slash
    after it); hand every other request to ``app``.

    ``draining`` is asked at each readiness probe: the pod's drain or this
    worker's own exit (``server/worker_state.py``)."""

    def __init__(
        self,
        app: ASGIApp,
        checks: Sequence[Check],
        *,
        draining: Callable[[], bool],
        ready_path: str = READY_ROUTE,
        live_path: str = LIVE_ROUTE,
    ) -> None:
        self.app = app
        self.checks = list(checks)
        self.draining = draining
        self.live_path = live_path
        self.routes = frozenset({ready_path, live_path})  # what the scope's route says
        self._route_of_path = {p: route for route in self.routes for p in (route, route + "/")}

    @markcoroutinefunction
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        route = self._route_of_path.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:  # the application's awaitable: no coroutine of ours on its way
            return self.app(scope, receive, send)
        return self._answer(route, scope, send)

    async def _answer(self, route: str, scope: Scope, send: Send) -> None:
        scope[ROUTE] = route
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            allow = [*NO_STORE, (b"allow", b"GET, HEAD")]
            await send_json(send, 405, {"status": "method not allowed"}, headers=allow)
            return
        if route == self.live_path:
            await send_json(send, 200, LIVE_BODY, headers=NO_STORE, head=head)
            return
        readiness = await self.readiness()
        await send_json(send, readiness.status, readiness.body(), headers=NO_STORE, head=head)

    async def readiness(self) -> Readiness:
        results = await asyncio.gather(*(check.run() for check in self.checks))
        return Readiness(draining=self.draining(), checks=list(results))
