"""The contenders: one command line each, serving the same Django project.

Every contender gets the same environment (``session.environment``), the same
worker count and the same core. Ours reads its settings from that environment
(``python:django_k8s_runtime.gunicorn``); the peers get the equivalent settings on their command
lines: bind address, workers, uvloop and httptools where they can use them,
lifespan off (Django has none), keep-alive 75 s, graceful timeout 30 s, trusted
proxies, preloading where Gunicorn runs them, and no access log.

The ASGI peers serve ``bench.stock:application``: Django's own ``ASGIHandler``
inside the same probes, request timeout and observer layers as ours. That is what
a team gets by pointing that server at its Django project; ours differs from it
in the server and in Django's request path (the runtime's one visit to a thread).

More rows are not peers (role VARIANT): ours *as deployed*, with the access
log and the Prometheus metrics on (their defaults), to show what those two
features cost; ours traced (OpenTelemetry exporting every request, then one in
ten, to a local sink) to show what tracing costs; and Granian serving our
application (``config.asgi``), to show what the server's share is once Django's
request path is the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import results

BIN = Path(sys.executable).parent

LIVE, READY, HELLO, ITEMS, ADMIN, UPSTREAM, UPSTREAM_SYNC = (
    "/health/live",
    "/health",
    "/api/hello",
    "/api/items",
    "/admin/login/",
    "/api/upstream",
    "/api/upstream/sync",
)
# What the upstream stand-in (example/upstream.py) waits before it answers.
UPSTREAM_DELAY_MS = 50
ENDPOINTS = (LIVE, READY, HELLO, ITEMS, ADMIN, UPSTREAM)  # the rounds; not UPSTREAM_SYNC
ENDPOINT_NAMES = {
    LIVE: "liveness probe",
    READY: "readiness probe (DB check, cached 1 s)",
    HELLO: "JSON view",
    ITEMS: "JSON view, one DB query",
    ADMIN: "admin login page (template)",
    UPSTREAM: f"async view awaiting a {UPSTREAM_DELAY_MS} ms upstream call",
    UPSTREAM_SYNC: f"sync view blocking a thread on a {UPSTREAM_DELAY_MS} ms upstream call",
}
DJANGO_VIEWS = (HELLO, ITEMS, ADMIN, UPSTREAM)
SYNC_VIEWS = (HELLO, ITEMS, ADMIN)  # where ours is held against gthread's CPU per request

# The mixed load: these run at once against one server, (path, connections) each.
# The synchronous views (64 connections, each a thread blocked on the upstream)
# saturate GUNICORN_THREADS; the async view and the probe should keep answering.
MIXED_LOAD = ((UPSTREAM_SYNC, 64), (UPSTREAM, 64), (LIVE, 8))

# Threads per gthread worker: as many as each worker's database pool has
# connections (DB_POOL_MAX_SIZE, 5 by default), so no thread waits for one.
GTHREAD_THREADS = 5

_KEEPALIVE = "75"  # GUNICORN_KEEPALIVE's default
_GRACEFUL = "30"  # GUNICORN_GRACEFUL_TIMEOUT's default
_TRUSTED = "127.0.0.1,::1"  # GUNICORN_FORWARDED_ALLOW_IPS's default


OURS, PEER, CEILING, VARIANT = "ours", "peer", "ceiling", "variant"


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    argv: Callable[[int, int], list[str]]  # (port, workers) -> command line
    role: str = PEER
    endpoints: tuple[str, ...] = ENDPOINTS
    ready_path: str = READY  # start-to-ready is timed to the first 200 here
    note: str = ""
    # Variables laid over the common environment: (name, value); FREE_PORT and
    # SCRATCH_DIR are replaced at start (see session.Session._serving).
    environ: tuple[tuple[str, str], ...] = ()
    mixed: bool = False  # also driven with MIXED_LOAD, after the rounds
    wsgi: bool = False  # a WSGI server: not one of the ASGI peers

    @property
    def is_ours(self) -> bool:
        return self.role == OURS

    @property
    def mixed_paths(self) -> tuple[str, ...]:
        """The paths of MIXED_LOAD this contender is driven on (the probe only where
        it has one)."""
        if not self.mixed:
            return ()
        return tuple(path for path, _ in MIXED_LOAD if path != LIVE or LIVE in self.endpoints)

    @property
    def is_ceiling(self) -> bool:
        return self.role == CEILING

    def recorded(self) -> results.Contender:
        return results.Contender(
            self.key,
            self.label,
            self.role,
            self.note,
            self.endpoints,
            self.mixed_paths,
            self.wsgi,
        )


# What the ASGI peers serve: Django's own ASGIHandler in our layers (bench/stock.py),
# which the runtime composes here (not part of its public surface: no project needs it).
STOCK = "bench.stock:application"
STOCK_LAYERS = "django_k8s_runtime.asgi.stack"
OURS_APP = "config.asgi:application"
_STOCK_NOTE = (
    "serves `bench.stock:application`, Django's own `ASGIHandler` in the same layers as "
    "ours: what pointing this server at the Django project gives"
)

FREE_PORT = "<free port>"
SCRATCH_DIR = "<a directory of the benchmark's own, removed at the end>"
OTLP_SINK = "<the benchmark's OTLP/HTTP sink, which counts the exports and drops them>"


def _traced(ratio: str) -> tuple[tuple[str, str], ...]:
    # Parent-based, as a team sets it: wrk sends no traceparent, so every request is a
    # root and the ratio decides.
    return (
        ("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_SINK),
        ("OTEL_SERVICE_NAME", "bench"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", ratio),
    )


def _ours(port: int, workers: int) -> list[str]:
    # Port and workers come from the environment (GUNICORN_PORT, GUNICORN_WORKERS).
    return [str(BIN / "gunicorn"), "-c", "python:django_k8s_runtime.gunicorn", OURS_APP]


def _uvicorn(app: str) -> Callable[[int, int], list[str]]:
    def argv(port: int, workers: int) -> list[str]:
        return [
            str(BIN / "uvicorn"),
            app,
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
            *("--loop", "uvloop", "--http", "httptools", "--lifespan", "off"),
            *("--timeout-keep-alive", _KEEPALIVE, "--timeout-graceful-shutdown", "29"),
            *("--forwarded-allow-ips", _TRUSTED, "--no-access-log"),
        ]

    return argv


def _plain_gunicorn(port: int, workers: int, *worker: str) -> list[str]:
    # No -c: plain Gunicorn (no access log by default), our settings nowhere.
    return [
        str(BIN / "gunicorn"),
        *worker,
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
        *("--timeout", "30", "--graceful-timeout", _GRACEFUL, "--keep-alive", _KEEPALIVE),
        *("--forwarded-allow-ips", _TRUSTED, "--worker-tmp-dir", "/dev/shm"),
        "--preload",  # as ours does by default (GUNICORN_PRELOAD)
    ]


def _gunicorn_asgi(port: int, workers: int) -> list[str]:
    return [
        *_plain_gunicorn(port, workers, "-k", "asgi"),
        *("--asgi-loop", "uvloop", "--asgi-lifespan", "off"),
        STOCK,
    ]


def _granian(app: str) -> Callable[[int, int], list[str]]:
    def argv(port: int, workers: int) -> list[str]:
        return [
            str(BIN / "granian"),
            *("--interface", "asginl"),  # ASGI without lifespan
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
            *("--loop", "uvloop", "--no-access-log"),
            app,
        ]

    return argv


def _gthread(port: int, workers: int) -> list[str]:
    return [
        *_plain_gunicorn(port, workers, "-k", "gthread", "--threads", str(GTHREAD_THREADS)),
        "config.wsgi:application",
    ]


CONTENDERS = (
    Contender(
        "ours",
        "ours: Gunicorn + django-k8s-runtime",
        _ours,
        role=OURS,
        note="`gunicorn -c python:django_k8s_runtime.gunicorn config.asgi:application`: our "
        "worker, Django through the runtime's request path (one visit to a thread per "
        "request; `GUNICORN_THREADS=5` for sync views)",
        mixed=True,
    ),
    Contender(
        "uvicorn",
        "Uvicorn standalone (Django's ASGI handler)",
        _uvicorn(STOCK),
        note=f"`uvicorn bench.stock:application`, uvloop + httptools; {_STOCK_NOTE}",
        mixed=True,
    ),
    Contender(
        "gunicorn-asgi",
        "Gunicorn native ASGI (-k asgi, Django's ASGI handler)",
        _gunicorn_asgi,
        note=f"Gunicorn 27's own asyncio worker, uvloop; {_STOCK_NOTE}",
    ),
    Contender(
        "granian",
        "Granian (Django's ASGI handler)",
        _granian(STOCK),
        note=f"Rust HTTP server, `--interface asginl`, uvloop; {_STOCK_NOTE}",
    ),
    Contender(
        "gthread",
        "Gunicorn gthread (WSGI)",
        _gthread,
        endpoints=(HELLO, ITEMS, ADMIN, UPSTREAM),
        ready_path=ITEMS,
        wsgi=True,
        note=f"`config.wsgi:application`, {GTHREAD_THREADS} threads per worker; Django's WSGI "
        "handler runs the async view with `async_to_sync` (a new event loop, in a new thread, "
        "per request) from those threads; the probes are ASGI-only, so it serves no /health*",
        mixed=True,
    ),
    Contender(
        "ceiling",
        "ceiling: raw ASGI hello on Uvicorn",
        _uvicorn("bench.ceiling:app"),
        role=CEILING,
        endpoints=(LIVE,),
        note="`bench/ceiling.py`, uvloop + httptools, answers every path",
    ),
    Contender(
        "ours-deployed",
        "ours as deployed (access log + metrics on)",
        _ours,
        role=VARIANT,
        note="ours with `GUNICORN_ACCESS_LOG=true` and `METRICS_PORT` set (their defaults); "
        "not a peer: shows what the two features cost",
        environ=(
            ("GUNICORN_ACCESS_LOG", "true"),
            ("METRICS_PORT", FREE_PORT),
            # Ours would create a fresh directory under /dev/shm on every start.
            ("PROMETHEUS_MULTIPROC_DIR", SCRATCH_DIR),
        ),
    ),
    Contender(
        "ours-traced",
        "ours, traced (every request sampled)",
        _ours,
        role=VARIANT,
        note="ours with OpenTelemetry on (`OTEL_EXPORTER_OTLP_ENDPOINT` set, the `[otel]` "
        "extra), `parentbased_traceidratio` at 1.0, exporting to a local sink; not a peer: "
        "shows what tracing costs",
        environ=_traced("1.0"),
    ),
    Contender(
        "ours-traced-sampled",
        "ours, traced (1 in 10 sampled)",
        _ours,
        role=VARIANT,
        note="as above at a ratio of 0.1, what a busy service usually runs",
        environ=_traced("0.1"),
    ),
    Contender(
        "granian-ours",
        "Granian serving our application",
        _granian(OURS_APP),
        role=VARIANT,
        note="Granian as above, serving `config.asgi:application` (our handler and layers, "
        "`GUNICORN_THREADS=5`; no request timeout, which only our worker sets); not a peer: "
        "beside ours, shows the server's share once Django's request path is the same",
    ),
)
