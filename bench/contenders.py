"""The contenders: one command line each, serving the same Django project.

Every contender gets the same environment (``__main__.environment``), the same
worker count and the same core. Ours reads its settings from that environment
(``config/gunicorn.py``); the peers get the equivalent settings on their command
lines: bind address, workers, uvloop and httptools where they can use them,
lifespan off (Django has none), keep-alive 75 s, graceful timeout 30 s, trusted
proxies, preloading where Gunicorn runs them, and no access log.

One more row is not a peer: ours *as deployed*, with the access log and the
Prometheus metrics on (their defaults), to show what those two features cost.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent

LIVE, READY, HELLO, ITEMS, ADMIN = (
    "/health/live",
    "/health",
    "/api/hello",
    "/api/items",
    "/admin/login/",
)
ENDPOINTS = (LIVE, READY, HELLO, ITEMS, ADMIN)
ENDPOINT_NAMES = {
    LIVE: "liveness probe",
    READY: "readiness probe (DB check, cached 1 s)",
    HELLO: "JSON view",
    ITEMS: "JSON view, one DB query",
    ADMIN: "admin login page (template)",
}

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

    @property
    def is_ours(self) -> bool:
        return self.role == OURS

    @property
    def is_ceiling(self) -> bool:
        return self.role == CEILING


FREE_PORT = "<free port>"
SCRATCH_DIR = "<a directory of the benchmark's own, removed at the end>"


def _ours(port: int, workers: int) -> list[str]:
    # Port and workers come from the environment (GUNICORN_PORT, GUNICORN_WORKERS).
    return [
        str(BIN / "gunicorn"),
        "-c",
        "python:django_k8s_runtime.gunicorn",
        "config.asgi:application",
    ]


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
        "config.asgi:application",
    ]


def _granian(port: int, workers: int) -> list[str]:
    return [
        str(BIN / "granian"),
        *("--interface", "asginl"),  # ASGI without lifespan
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        *("--loop", "uvloop", "--no-access-log"),
        "config.asgi:application",
    ]


def _gthread(port: int, workers: int) -> list[str]:
    return [
        *_plain_gunicorn(port, workers, "-k", "gthread", "--threads", str(GTHREAD_THREADS)),
        "config.wsgi:application",
    ]


CONTENDERS = (
    Contender(
        "ours",
        "ours: Gunicorn + server.worker.UvicornWorker",
        _ours,
        role=OURS,
        note="`gunicorn -c python:django_k8s_runtime.gunicorn config.asgi:application`",
    ),
    Contender(
        "uvicorn",
        "Uvicorn standalone",
        _uvicorn("config.asgi:application"),
        note="`uvicorn config.asgi:application`, uvloop + httptools",
    ),
    Contender(
        "gunicorn-asgi",
        "Gunicorn native ASGI (-k asgi)",
        _gunicorn_asgi,
        note="Gunicorn 27's own asyncio worker, uvloop",
    ),
    Contender(
        "granian",
        "Granian (ASGI)",
        _granian,
        note="Rust HTTP server, `--interface asginl`, uvloop",
    ),
    Contender(
        "gthread",
        "Gunicorn gthread (WSGI)",
        _gthread,
        endpoints=(HELLO, ITEMS, ADMIN),
        ready_path=ITEMS,
        note=f"`config.wsgi:application`, {GTHREAD_THREADS} threads per worker; the probes "
        "are ASGI-only, so it serves no /health*",
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
)
