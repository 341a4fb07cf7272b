"""One request id, one access-log line and the request metrics, per request.

It sits outside the request timeout, the probes and Django, so every response,
including a probe's, a 404 or a 504 from the request timeout, carries
``X-Request-ID``, is logged with its duration and is counted. The client address
is the one Uvicorn derived from trusted proxy headers (GUNICORN_FORWARDED_ALLOW_IPS).

Which route answered is recorded in the scope by the layer that answered (the
probes, or Django's ``record_route``); the observer reads it when the response is
done, to label the metrics and to leave ``quiet_routes`` (the probes, unless
LOG_PROBES) out of the access log. It knows nothing of either layer.

A request whose response never completed is recorded by who was at fault, so a
client cannot drive the 5xx rate: 499 when the client left or stopped reading
(nginx's code for it), the client's own 400 when the server refused its body
(``scope["client_error"]``), 504 when the request's deadline cut it
(``scope["deadline"]``), and 500 only when the application failed. A response
the application completed after its client had gone (the HTTP protocol marks the
scope ``client_gone``; Uvicorn drops what is sent then) reached no one: 499 too,
with the application's status beside it in the log (``answered``).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from django_k8s_runtime.observability import request_id
from django_k8s_runtime.observability.access_log import AccessLog
from django_k8s_runtime.observability.metrics import Metrics

access_log = AccessLog("access")


class RequestObserver:
    def __init__(
        self,
        app: Any,
        *,
        access_log: bool,
        quiet_routes: Collection[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.quiet_routes = frozenset(quiet_routes)
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == request_id.HEADER:
                incoming = value
                break
        rid = request_id.accept_or_make(incoming)
        token = request_id.bind(rid)
        if self.metrics is not None:
            self.metrics.request_started()
        started = time.perf_counter()
        response = _ObservedSend(send, rid)
        failed = True
        answered = None  # the status of a complete response the client never got
        try:
            await self.app(scope, receive, response)
            failed = False
        finally:
            status = response.status
            if failed:
                status = 500
            elif not response.complete:
                status = _unfinished(scope, status)
            elif scope.get("client_gone"):
                answered, status = status, CLIENT_CLOSED
            elapsed = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.request_finished(scope, status, elapsed)
            if self.access_log and scope.get("route") not in self.quiet_routes:
                self._log(scope, status, elapsed, answered)
            request_id.unbind(token)

    @staticmethod
    def _log(scope: dict[str, Any], status: int, elapsed: float, answered: int | None) -> None:
        client = scope.get("client")
        query = scope.get("query_string", b"")
        access_log.request(
            client[0] if client else "-",
            scope["method"],
            scope["path"] + ("?" + query.decode("latin-1") if query else ""),
            status,
            elapsed,
            answered,
        )


CLIENT_CLOSED = 499  # nginx's status for a client that went away


class _ObservedSend:
    """The application's ``send``: notes the response's status and whether it
    completed, and adds the request id to its head. Not a coroutine of its own: it
    hands back the awaitable of the ``send`` it wraps."""

    __slots__ = ("complete", "header", "send", "status")

    def __init__(self, send: Any, rid: str) -> None:
        self.send = send
        self.header = (request_id.HEADER, rid.encode())
        self.status = 0
        self.complete = False

    def __call__(self, message: dict[str, Any]) -> Any:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self.header]}
        elif not message.get("more_body"):
            self.complete = True
        return self.send(message)


def _unfinished(scope: dict[str, Any], status: int) -> int:
    """The status to record for a response the application ended without completing."""
    deadline = scope.get("deadline")
    if deadline is not None and deadline.expired:
        return 504
    if not status:
        return scope.get("client_error", CLIENT_CLOSED)
    return CLIENT_CLOSED
