"""The upstream service the example's ``/api/upstream`` views call, for the session.

One stand-in (``example/upstream.py``, answering after ``?delay_ms=``) serves every
contender, started once on the load core, like PostgreSQL, so waiting on it costs
the server being measured nothing but the wait.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import processes
from bench.contenders import UPSTREAM_DELAY_MS
from harness.processes import free_port, inherited_environment

BIN = Path(sys.executable).parent
# Longer than any client keeps an idle connection (aiohttp: 15 s), so the client
# always closes first: a connection is never closed by the stand-in just as a
# contender reuses it, which would be counted against the contender as an error.
KEEPALIVE_SECONDS = 75


def argv(port: int) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        "example.upstream:app",
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--loop", "uvloop", "--http", "httptools", "--lifespan", "off"),
        *("--timeout-keep-alive", str(KEEPALIVE_SECONDS), "--no-access-log"),
    ]


@contextlib.contextmanager
def serving(log: Path, cpus: set[int] | None) -> Iterator[str]:
    """The stand-in running on a free port, on ``cpus``; yields the URL contenders
    call (EXAMPLE_UPSTREAM_URL). Stopped on the way out."""
    port = free_port()
    started = time.monotonic()
    process = processes.start(
        argv(port), {**inherited_environment(), "PYTHONUNBUFFERED": "1"}, log, cpus
    )
    try:
        try:
            processes.wait_ready(process, port, "/quote?delay_ms=0", started)
        except RuntimeError as error:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the upstream stand-in did not start: {error}\n{tail}") from None
        yield f"http://127.0.0.1:{port}/quote?delay_ms={UPSTREAM_DELAY_MS}"
    finally:
        processes.stop(process)
