"""One request id, one access-log line and the request metrics, per request.

It sits outside the request timeout, the probes and Django, so every response,
including a probe's, a 404 or a 504 from the request timeout, carries
``X-Request-ID``, is logged with its duration and is counted. The client address
is the one Uvicorn derived from trusted proxy headers (GUNICORN_FORWARDED_ALLOW_IPS).

Which route answered is recorded in the scope by the layer that answered (the
probes, or Django's ``record_route``); the observer reads it when the response is
done, to label the metrics and to leave ``quiet_routes`` (the probes, unless
LOG_PROBES) out of the access log. It knows nothing of either layer.

A client that left before its response was complete (the HTTP protocol marks the
scope ``client_gone``) received nothing, whatever the application answered: it
is logged and counted as 499, nginx's "client closed request", with the
application's status beside it in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from django_k8s_runtime.observability import request_id
from django_k8s_runtime.observability.metrics import Metrics

access_logger = logging.getLogger("access")
CLIENT_GONE = 499  # nginx's code for a client that closed the connection first


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
        incoming = next(
            (value for name, value in scope["headers"] if name == request_id.HEADER), None
        )
        rid = request_id.accept_or_make(incoming)
        token = request_id.bind(rid)
        status = 500
        if self.metrics is not None:
            self.metrics.request_started()
        started = time.perf_counter()

        responded = False

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (request_id.HEADER, rid.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            gone = bool(scope.get("client_gone"))
            answered = status if gone and responded else None
            if gone:
                status = CLIENT_GONE
            if self.metrics is not None:
                self.metrics.request_finished(scope, status, elapsed)
            if self.access_log and scope.get("route") not in self.quiet_routes:
                self._log(scope, status, elapsed, gone, answered)
            request_id.unbind(token)

    @staticmethod
    def _log(
        scope: dict[str, Any], status: int, elapsed: float, gone: bool, answered: int | None
    ) -> None:
        client = scope.get("client")
        address = client[0] if client else "-"
        query = scope.get("query_string", b"")
        path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        fields = {
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client": address,
        }
        note = ""
        if gone:
            fields["answered"] = answered
            note = " (client gone before its response" + (
                f"; the application answered {answered})" if answered else ")"
            )
        access_logger.info(
            '%s "%s %s" %d %.1fms%s',
            address,
            scope["method"],
            path,
            status,
            elapsed * 1000,
            note,
            extra=fields,
        )
