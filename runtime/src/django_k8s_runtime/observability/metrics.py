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

No request writes to the shared files. Each worker keeps its requests (counts,
durations, in flight) and its waits for a thread (:class:`BatchedHistogram`) in its
own memory, and :meth:`Metrics.publish` adds them to the files every
``PUBLISH_SECONDS`` from a timer the composition root sets, before a scrape the
worker answers, and once more when it has finished serving; with them the timer
records the saturation gauges (threads busy and waiting, requests to async views,
the database pools; :meth:`Metrics.record_saturation`), summed over the live workers.
"""

from __future__ import annotations

import atexit
import bisect
import fcntl
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from inspect import markcoroutinefunction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django_k8s_runtime.asgi_types import ROUTE

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENVIRONMENT_KEY = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads this
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A wait for a thread is bounded by half the request's time left (admission), so
# from a few milliseconds to GUNICORN_TIMEOUT / 2.
# How late a request may be in a scrape: it is counted in its worker, and added to
# what a scrape reads at most this long after (Metrics.publish).
PUBLISH_SECONDS = 1.0
THREAD_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


# The files prometheus_client's multiprocess mode writes, and nothing else: its
# values.py names each ``<type>_<pid>.db``, a gauge's type with its mode
# (``counter_12.db``, ``gauge_livesum_12.db``, ``histogram_12.db``).
METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_[0-9]+\.db")
# Held (shared) by every process of the server that made the directory: a directory
# whose lock nobody holds was left by a server that is gone.
LOCK_NAME = "server.lock"
FRESH_PREFIX = "prometheus-"
LOCK_WAIT_SECONDS = 1.0

_directory: str | None = None  # prepared by this process (tree)
_lock: int | None = None  # this tree's hold on a directory made here
_maker_pid = 0


def foreign_entries(directory: str) -> list[str]:
    """Entries of ``directory`` that neither prometheus_client nor the runtime wrote
    (a start-up problem: the runtime removes nothing else). The runtime's lock is
    its own: a directory made here is in the environment once prepared, and is
    checked again when a preloaded project declares its variables."""
    ours = (LOCK_NAME, f".{LOCK_NAME}.new")
    try:
        with os.scandir(directory) as entries:
            return sorted(
                entry.name
                for entry in entries
                if not _is_metrics_file(entry) and entry.name not in ours
            )
    except OSError as error:
        return [f"<unreadable: {error.strerror}>"]


def _is_metrics_file(entry: os.DirEntry[str]) -> bool:
    return bool(METRICS_FILE.fullmatch(entry.name)) and entry.is_file(follow_symlinks=False)


def prepare_directory(configured: str) -> str:
    """Create (or empty) the shared directory and tell prometheus_client about it.

    Once per process tree: the Gunicorn config module calls it in the master, and
    ``asgi.py`` again (for a server without the runtime's Gunicorn config), which
    then gets the same directory; emptying it a second time would reset every
    counter.

    An operator's directory is emptied of metrics files only (start-up refuses one
    that holds anything else). A directory made here, under /dev/shm, is removed
    by the last process of this server to exit, whatever ends it (a normal stop, a
    failed start, a killed master whose workers then stop); one left by a server
    killed whole (SIGKILL to every process) is removed by the next start on the
    machine, which sees that no process holds its lock."""
    global _directory, _lock, _maker_pid
    if _directory is not None:
        return _directory
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        with os.scandir(directory) as entries:
            for entry in entries:
                if _is_metrics_file(entry):
                    os.unlink(entry.path)
    else:
        base = Path("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())  # noqa: S108 - a tmpfs
        for left in base.glob(FRESH_PREFIX + "*"):
            _remove_if_abandoned(left)
        directory = Path(tempfile.mkdtemp(prefix=f"{FRESH_PREFIX}{os.getpid()}-", dir=base))
        _lock, _maker_pid = _hold(directory), os.getpid()
        atexit.register(_release)  # also run by forked workers as they exit
    _directory = str(directory)
    os.environ[ENVIRONMENT_KEY] = _directory
    return _directory


def _hold(directory: Path) -> int:
    """Lock the directory for this process tree (forked workers share the lock). The
    lock is taken before its file gets the name others look for, so no other start
    ever sees it unheld."""
    path = directory / f".{LOCK_NAME}.new"  # foreign_entries() knows this name too
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    path.rename(directory / LOCK_NAME)
    return descriptor


def _release() -> None:
    """At exit of any process of the tree: let go of the lock; the last one out
    removes the directory. The master waits a moment for workers it has just
    killed."""
    global _lock
    if _lock is None or _directory is None:
        return
    os.close(_lock)
    _lock = None
    deadline = time.monotonic() + (LOCK_WAIT_SECONDS if os.getpid() == _maker_pid else 0)
    while not _remove_if_abandoned(Path(_directory)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _remove_if_abandoned(directory: Path) -> bool:
    """Remove a directory made by :func:`prepare_directory` if no process holds its
    lock any more; whether it is gone. One without the lock file is not ours to judge."""
    try:
        descriptor = os.open(directory / LOCK_NAME, os.O_RDWR)
    except OSError:
        return not directory.exists()
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live server's
    else:
        shutil.rmtree(directory, ignore_errors=True)
        return True
    finally:
        os.close(descriptor)


class BatchedHistogram:
    """Observations of a histogram kept in this process, by labels, and added to it by
    :meth:`publish`, all at once; with ``counter``, the count of each set of labels is
    added to that counter too (``http_requests_total`` beside the durations).

    prometheus_client's multiprocess ``observe()`` takes a lock and writes two values
    to a memory-mapped file (microseconds each), and ``labels()`` takes another lock
    to find the child. Here an observation is a bisection and three additions under a
    lock of its own; :meth:`publish` adds each bucket's count with what ``observe()``
    itself uses (``_sum``, ``_buckets``, ``_upper_bounds``: private, pinned with
    prometheus-client by tests/runtime/observability/test_metrics_batched.py)."""

    def __init__(self, histogram: Any, counter: Any = None) -> None:
        self._histogram = histogram
        self._counter = counter
        self._bounds = list(histogram._upper_bounds)  # ends with +Inf
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, ...], list[Any]] = {}

    def observe(self, amount: float, labels: tuple[str, ...] = ()) -> None:
        index = bisect.bisect_left(self._bounds, amount)  # the first bound >= amount
        with self._lock:
            pending = self._pending.get(labels)
            if pending is None:
                pending = self._pending[labels] = [0.0, [0] * len(self._bounds)]
            pending[0] += amount
            pending[1][index] += 1

    def publish(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for labels, (total, counts) in pending.items():
            histogram = self._histogram.labels(*labels) if labels else self._histogram
            histogram._sum.inc(total)
            for bucket, count in zip(histogram._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)
            if self._counter is not None:
                self._counter.labels(*labels).inc(sum(counts))


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

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
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
