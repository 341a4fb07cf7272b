"""One request id, one access-log line and the request metrics, per request.

It sits outside the request timeout, the probes and Django, so every response,
including a probe's, a 404 or a 504 from the request timeout, carries
``X-Request-ID``, is logged with its duration and is counted. The client address
is the one Uvicorn derived from trusted proxy headers (GUNICORN_FORWARDED_ALLOW_IPS).

Which route answered is recorded in the scope by the layer that answered (the
probes, or Django's ``record_route``); the observer reads it when the response is
done, to label the metrics and to leave ``quiet_routes`` (the probes, unless
LOG_PROBES) out of the access log. It knows nothing of either layer.

When traced (``tracing``, from the composition root; None when off), the request's
server span is current while the request runs and ends after its access line, named
by the route and with the status recorded here (``observability/traces.py``).

**The status recorded is the status sent.** A response whose head went out is
recorded with that status, even if it did not end as the application meant it
to; why it ended early is beside it (``scope[ENDED_EARLY]``, or the client gone,
or the application's error): the access line's ``ended`` and
``http_responses_ended_early_total``. A request answered with nothing is recorded
by who was at fault, so a client cannot drive the 5xx rate: 499 when the client
left first (nginx's code for it), the client's own 400 when the server refused its
body (``scope[CLIENT_ERROR]``), and 500 when the application failed. A response
the application completed after its client had gone (the HTTP protocol marks the
scope ``CLIENT_GONE``; Uvicorn drops what is sent then) reached no one: 499 too,
with the application's status beside it in the log (``answered``).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django_k8s_runtime.asgi_types import (
    CLIENT_ERROR,
    CLIENT_GONE,
    CLIENT_LEFT,
    ENDED_EARLY,
    FAILED,
    ROUTE,
)
from django_k8s_runtime.observability import request_id
from django_k8s_runtime.observability.access_log import AccessLog
from django_k8s_runtime.observability.metrics import Metrics

if TYPE_CHECKING:  # imported only when tracing is on (django_k8s_runtime.tracing)
    from django_k8s_runtime.observability.traces import RequestTracing

access_log = AccessLog()


class RequestObserver:
    def __init__(
        self,
        app: Any,
        *,
        access_log: bool,
        quiet_routes: Collection[str] = (),
        metrics: Metrics | None = None,
        tracing: RequestTracing | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.quiet_routes = frozenset(quiet_routes)
        self.metrics = metrics
        self.tracing = tracing  # None: tracing off, nothing paid

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
        span = self.tracing.begin(scope) if self.tracing is not None else None
        if self.metrics is not None:
            self.metrics.request_started()
        started = time.perf_counter()
        response = _ObservedSend(send, rid, scope)
        failed = True
        try:
            await self.app(scope, receive, response)
            failed = False
        finally:
            status, answered, ended = _outcome(scope, response, failed)
            elapsed = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.request_finished(scope, status, elapsed, ended)
            if self.access_log and scope.get(ROUTE) not in self.quiet_routes:
                self._log(scope, status, elapsed, answered, ended)
            if span is not None:
                span.end(scope, status, ended)
            request_id.unbind(token)

    @staticmethod
    def _log(
        scope: dict[str, Any],
        status: int,
        elapsed: float,
        answered: int | None,
        ended: str | None,
    ) -> None:
        client = scope.get("client")
        query = scope.get("query_string", b"")
        if isinstance(query, bytes):  # as ASGI has it; Django accepts a str too
            query = query.decode("latin-1")
        access_log.request(
            client[0] if client else "-",
            scope["method"],
            scope["path"] + ("?" + query if query else ""),
            status,
            elapsed,
            answered,
            ended,
        )


CLIENT_CLOSED = 499  # nginx's status for a client that went away


class _ObservedSend:
    """The application's ``send``: notes the response's status and whether it
    completed, and adds the request id to its head. Not a coroutine of its own: it
    hands back the awaitable of the ``send`` it wraps."""

    __slots__ = ("complete", "header", "scope", "send", "status", "unheard")

    def __init__(self, send: Any, rid: str, scope: dict[str, Any]) -> None:
        self.send = send
        self.header = (request_id.HEADER, rid.encode())
        self.scope = scope
        self.status = 0
        self.complete = False
        self.unheard = False  # the head was sent after the client had gone

    def __call__(self, message: dict[str, Any]) -> Any:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.unheard = self.scope.get(CLIENT_GONE, False)
            message = {**message, "headers": [*message.get("headers", ()), self.header]}
        elif not message.get("more_body"):
            self.complete = True
        return self.send(message)


def _outcome(
    scope: dict[str, Any], response: _ObservedSend, failed: bool
) -> tuple[int, int | None, str | None]:
    """The status to record; the status of a response no one heard (``answered``);
    and why a response under way ended early (``ended``)."""
    if not response.status:  # nothing was sent
        return (500 if failed else scope.get(CLIENT_ERROR, CLIENT_CLOSED)), None, None
    if response.unheard or (response.complete and scope.get(CLIENT_GONE)):
        return CLIENT_CLOSED, response.status, None
    if response.complete:
        return response.status, None, None
    # An application that returns mid-response does so when its client has left.
    ended = scope.get(ENDED_EARLY) or (FAILED if failed else CLIENT_LEFT)
    return response.status, None, ended
