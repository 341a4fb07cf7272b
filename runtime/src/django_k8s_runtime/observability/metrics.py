"""Prometheus metrics that add up across Gunicorn's workers.

Each worker is its own process, so each would count on its own; prometheus_client's
multiprocess mode has every process write its numbers to files in one directory
(on a tmpfs), and a scrape of any worker sums them. The directory must be known
before prometheus_client is first imported, which is why the Gunicorn config
module calls :func:`prepare_directory` before the app is loaded, and why the
master marks dead workers (:func:`worker_exited`) so their live gauges vanish
while their counters keep counting.

/metrics is served on its own port (METRICS_PORT, a second Gunicorn listener) and
nowhere else: the public port never answers it, and the Service does not expose
the metrics port. prometheus_client renders it (``make_asgi_app``: the text or
OpenMetrics format as the scraper asks, gzip if it accepts it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENVIRONMENT_KEY = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads this
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


_directory: str | None = None  # prepared by this process
_made_here = False


def prepare_directory(configured: str) -> str:
    """Create (or empty) the shared directory and tell prometheus_client about it.

    Once per process tree: ``config/gunicorn.py`` calls it in the master, and
    ``config/asgi.py`` again (for a server without our Gunicorn config), which then
    gets the same directory; emptying it a second time would reset every counter.
    An operator's directory is emptied, not removed; one made here (under /dev/shm)
    is removed again by :func:`remove_directory` when the master exits."""
    global _directory, _made_here
    if _directory is not None:
        return _directory
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for entry in directory.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    else:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - a tmpfs
        directory = Path(tempfile.mkdtemp(prefix="prometheus-", dir=base))
        _made_here = True
    _directory = str(directory)
    os.environ[ENVIRONMENT_KEY] = _directory
    return _directory


def remove_directory() -> None:
    """Gunicorn's on_exit hook: remove the directory prepare_directory() made."""
    if _made_here and _directory is not None:
        shutil.rmtree(_directory, ignore_errors=True)


class Metrics:
    """The application's metrics. Created once per process tree (before forking).

    ``registry`` is prometheus_client's default one, whose values the multiprocess
    files hold; a test passes a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = REGISTRY if registry is None else registry
        labels = ("method", "route", "status")
        self.requests = Counter(
            "http_requests", "HTTP requests answered.", labels, registry=registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels,
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being answered now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.ready = Gauge(
            "app_ready",
            "1 when the last readiness check passed, 0 otherwise.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.check_ok = Gauge(
            "app_health_check_ok",
            "1 when a readiness check passed, by check.",
            ("check",),
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.connections_dropped = Counter(
            "http_connections_dropped",
            "Connections the server closed or answered itself before the application saw a "
            "request, by reason: head_timeout (408), head_too_large (414/431), malformed (400), "
            "send_timeout (the client stopped reading), idle_evicted (over worker_connections).",
            ("reason",),
            registry=registry,
        )
        self.worker_restarts = Counter(
            "gunicorn_worker_restarts",
            "Workers that exited and were replaced (recycled, reloaded, timed out, crashed).",
            registry=registry,
        )

    def request_started(self) -> None:
        self.in_flight.inc()

    def request_finished(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        self.in_flight.dec()
        method = scope.get("method", "")
        labels = (
            method if method in KNOWN_METHODS else "other",
            scope.get("route") or "<unmatched>",
            str(status),
        )
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)

    def connection_dropped(self, reason: str) -> None:
        self.connections_dropped.labels(reason).inc()

    def record_readiness(self, ready: bool, checks: dict[str, bool]) -> None:
        self.ready.set(1 if ready else 0)
        for name, ok in checks.items():
            self.check_ok.labels(name).set(1 if ok else 0)


_metrics: Metrics | None = None


def get() -> Metrics:
    """The one Metrics of this process tree (made in the master when the app is
    preloaded, and inherited by every worker)."""
    global _metrics  # one registry per process tree, like prometheus_client's own
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def worker_exited(pid: int) -> None:
    """Gunicorn's child_exit hook, in the master: count it, drop its live gauges."""
    from prometheus_client import multiprocess

    get().worker_restarts.inc()
    multiprocess.mark_process_dead(pid)


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every process's files: what a scrape reports."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class MetricsEndpoint:
    """Answer /metrics on the metrics port; pass everything else on the other ports.

    ``before_scrape`` runs before each scrape (e.g. records readiness, so
    ``app_ready`` is current); prometheus_client renders the registry."""

    def __init__(
        self,
        app: Any,
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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        server = scope.get("server")
        if scope["type"] != "http" or not server or server[1] != self.port:
            await self.app(scope, receive, send)
            return
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
