"""The application's metrics, summed over Gunicorn's workers (prometheus_client's
multiprocess mode: :mod:`.multiprocess`; served by :mod:`.metrics_endpoint`).

The master marks dead workers (:func:`worker_exited`) so their live gauges vanish
while their counters keep counting.

No request writes to the shared files. Each worker keeps its requests (counts,
durations, in flight) and its waits for a thread (:class:`.batched.BatchedHistogram`)
in its own memory, and :meth:`Metrics.publish` adds them to the files every
``PUBLISH_SECONDS`` from a timer the composition root sets, before a scrape the
worker answers, and once more when it has finished serving; with them the timer
records the saturation gauges (threads busy and waiting, requests to async views,
the database pools; :meth:`Metrics.record_saturation`), summed over the live workers.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django_k8s_runtime.asgi_types import ROUTE
from django_k8s_runtime.observability.batched import BatchedHistogram

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# How late a request may be in a scrape: it is counted in its worker, and added to
# what a scrape reads at most this long after (Metrics.publish).
PUBLISH_SECONDS = 1.0
# A wait for a thread is bounded by half the request's time left (admission), so
# from a few milliseconds to GUNICORN_TIMEOUT / 2.
THREAD_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
        self._answered = BatchedHistogram(self.duration, counter=self.requests)
        self._in_flight = 0  # this worker's; published as in_flight
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
            "send_timeout (the client stopped reading), idle_evicted (over worker_connections), "
            "body_too_slow (408: REQUEST_BODY_MIN_RATE), pipeline_full (requests pipelined "
            "without reading).",
            ("reason",),
            registry=registry,
        )
        self.ended_early = Counter(
            "http_responses_ended_early",
            "Responses whose head went out (their status is in http_requests_total) but that "
            "did not end as the application meant, by reason: client_gone, send_timeout (the "
            "client stopped reading), stalled (nothing sent for GUNICORN_TIMEOUT), error (the "
            "application raised or returned early).",
            ("route", "reason"),
            registry=registry,
        )
        self.worker_restarts = Counter(
            "gunicorn_worker_restarts",
            "Workers that exited, by cause: max_requests, memory (WORKER_MAX_MEMORY_MIB), "
            "stopped (by the master: reload, shutdown, one worker fewer), timeout (killed: "
            "its event loop was blocked for GUNICORN_TIMEOUT), crash (killed by a signal, the "
            "OOM killer's included, or exited on an error).",
            ("cause",),
            registry=registry,
        )
        self.exceptions = Counter(
            "http_request_exceptions",
            "Exceptions a view or middleware raised and Django answered 500 for, by class "
            "and route.",
            ("exception", "route"),
            registry=registry,
        )
        # Saturation, per worker and summed over the live ones (record_saturation).
        self.threads = Gauge(
            "http_request_threads",
            "Threads for requests to synchronous views (GUNICORN_THREADS per worker).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.threads_busy = Gauge(
            "http_request_threads_busy",
            "Of http_request_threads, those running a request now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.waiting_for_thread = Gauge(
            "http_requests_waiting_for_thread",
            "Requests to synchronous views waiting for a thread now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.thread_wait = Histogram(
            "http_request_thread_wait_seconds",
            "How long a request that found every thread busy waited for one (until a "
            "thread took it, or it was refused with a 503).",
            buckets=THREAD_WAIT_BUCKETS,
            registry=registry,
        )
        self._thread_waits = BatchedHistogram(self.thread_wait)
        self.async_in_flight = Gauge(
            "http_async_requests_in_flight",
            "Requests to async views in flight now (they hold none of the request threads).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_connections = Gauge(
            "db_pool_connections",
            "Connections of the database pools, by state: in_use (lent to a request) or idle.",
            ("database", "state"),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_connections_max = Gauge(
            "db_pool_connections_max",
            "The most connections the pools may open (DB_POOL_MAX_SIZE per worker).",
            ("database",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_waiting = Gauge(
            "db_pool_requests_waiting",
            "Requests waiting for a pooled connection now.",
            ("database",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_queued = Counter(
            "db_pool_requests_queued",
            "Requests for a pooled connection that had to wait for one.",
            ("database",),
            registry=registry,
        )
        self.pool_wait = Counter(
            "db_pool_wait_seconds",
            "Time requests spent waiting for a pooled connection, in all (divided by "
            "db_pool_requests_queued_total: the average wait).",
            ("database",),
            registry=registry,
        )
        self.pool_leaked = Gauge(
            "db_pool_connections_leaked",
            "Connections lent out for 10 s or more with no request to hold them (a leak); "
            "a worker whose pool is leaked dry is recycled.",
            ("database",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_failed = Counter(
            "db_pool_requests_failed",
            "Requests for a pooled connection that failed (none came within DB_POOL_TIMEOUT).",
            ("database",),
            registry=registry,
        )
        self._pool_totals: dict[tuple[str, str], float] = {}  # this process's, last seen
        self._published_with: list[Callable[[], None]] = []  # the sockets' counts (publish_with)
        self._publish_due = 0.0
        self._in_flight_published: int | None = None  # set at the first publish
        atexit.register(self.publish)  # in each process: what it counted last

    def request_started(self) -> None:
        self._in_flight += 1  # on the event loop, as request_finished

    def request_finished(
        self, scope: dict[str, Any], status: int, seconds: float, ended: str | None = None
    ) -> None:
        """Kept in the worker until :meth:`publish`, like the saturation gauges; a
        response that ended early (rare) is counted at once."""
        self._in_flight -= 1
        method = scope.get("method", "")
        route = scope.get(ROUTE) or "<unmatched>"
        labels = (method if method in KNOWN_METHODS else "other", route, str(status))
        self._answered.observe(seconds, labels)
        if ended is not None:
            self.ended_early.labels(route, ended).inc()
        if time.monotonic() >= self._publish_due:  # a server without the timer
            self.publish()

    def publish(self) -> None:
        """Add what this worker counted since the last call to what every scrape
        reads: once a second (the worker's timer, or the next request where the
        server has none), before a scrape this worker answers, and when the worker
        has finished serving."""
        self._publish_due = time.monotonic() + PUBLISH_SECONDS
        self._answered.publish()
        self._thread_waits.publish()
        for publish in self._published_with:
            publish()
        if self._in_flight != self._in_flight_published:
            self._in_flight_published = self._in_flight
            self.in_flight.set(self._in_flight)

    def publish_with(self, publish: Callable[[], None]) -> None:
        """Have ``publish`` run whenever this worker publishes its request counts: the
        WebSocket messages (observability/websocket.py), counted as they pass."""
        if publish not in self._published_with:
            self._published_with.append(publish)

    def connection_dropped(self, reason: str) -> None:
        self.connections_dropped.labels(reason).inc()

    def thread_waited(self, seconds: float) -> None:
        """A request waited for a thread (in the thread that took it): kept here until
        :meth:`publish`."""
        self._thread_waits.observe(seconds)

    def exception_raised(self, exception: str, route: str | None) -> None:
        self.exceptions.labels(exception, route or "<unmatched>").inc()

    def record_saturation(
        self, *, threads: int, busy: int, waiting: int, async_in_flight: int
    ) -> None:
        """This worker's request threads and async requests now."""
        self.threads.set(threads)
        self.threads_busy.set(busy)
        self.waiting_for_thread.set(waiting)
        self.async_in_flight.set(async_in_flight)

    def record_database_pools(self, stats: dict[str, dict[str, int]]) -> None:
        """This worker's connection pools now, from psycopg_pool's ``get_stats()`` by
        database alias: its gauges as they are, its running totals as what was added
        since the last call."""
        for database, pool in stats.items():
            available = pool.get("pool_available", 0)
            self.pool_connections.labels(database, "in_use").set(
                pool.get("pool_size", 0) - available
            )
            self.pool_connections.labels(database, "idle").set(available)
            self.pool_connections_max.labels(database).set(pool.get("pool_max", 0))
            self.pool_waiting.labels(database).set(pool.get("requests_waiting", 0))
            for counter, key, scale in (
                (self.pool_queued, "requests_queued", 1),
                (self.pool_wait, "requests_wait_ms", 1000),
                (self.pool_failed, "requests_errors", 1),
            ):
                total = pool.get(key, 0) / scale
                added = total - self._pool_totals.get((database, key), 0)
                child = counter.labels(database)  # shown from the start, at 0
                if added > 0:
                    child.inc(added)
                self._pool_totals[database, key] = total

    def record_leaked_connections(self, leaked: dict[str, int]) -> None:
        """This worker's leaked connections now, by database (leaks.py)."""
        for database, count in leaked.items():
            self.pool_leaked.labels(database).set(count)

    def expect_worker_exits(self, causes: tuple[str, ...]) -> None:
        """Every cause at 0 from the start, so a rate over it is defined before the
        first exit."""
        for cause in causes:
            self.worker_restarts.labels(cause)

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


def worker_exited(pid: int, cause: str) -> None:
    """Gunicorn's child_exit hook, in the master: count it by cause, drop its live
    gauges."""
    from prometheus_client import multiprocess

    get().worker_restarts.labels(cause).inc()
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
