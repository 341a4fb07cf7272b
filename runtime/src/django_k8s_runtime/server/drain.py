"""The pod's drain: the shutdown delay after SIGTERM, shared by master and workers.

Kubernetes sends SIGTERM and, at the same moment, starts removing the pod from
the Service's endpoints; kube-proxies and ingress controllers learn of it over
the next few seconds and keep sending new connections meanwhile. Gunicorn closes
its listening socket as soon as it handles SIGTERM, so those connections would be
refused. With a shutdown delay, the master instead marks the pod as draining
(readiness answers 503 at once), keeps serving for the delay, and only then
starts Gunicorn's ordinary graceful shutdown.

The draining flag is one byte of anonymous shared memory created when this
module is first imported in the master, before any worker is forked, so every
worker (including one forked during the drain) sees the master's writes. A
worker's own graceful exit is its own business (``server/worker_state.py``).
"""

from __future__ import annotations

import mmap
import os
import signal
import threading
import time
from typing import Any

_shared = mmap.mmap(-1, 1)


def begin() -> None:
    _shared[0] = 1


def has_begun() -> bool:
    """True once the master has received SIGTERM: the pod is going away."""
    return _shared[0] == 1


def install_shutdown_delay(arbiter: Any, delay: float) -> None:
    """Make the arbiter's first SIGTERM drain for ``delay`` seconds before stopping.

    Gunicorn dispatches signals to ``arbiter.handle_<name>()`` from its main loop,
    so replacing ``handle_term`` on the instance keeps everything else (SIGINT and
    SIGQUIT quick shutdown, SIGHUP, TTIN/TTOU, reaping) exactly as Gunicorn does it.
    A second SIGTERM during the drain skips the rest of the delay.
    """
    graceful_stop = arbiter.handle_term
    state: dict[str, float | None] = {"draining_since": None}

    def handle_term() -> None:
        begin()
        if delay <= 0 or state["draining_since"] is not None:
            graceful_stop()  # raises StopIteration: Gunicorn's graceful shutdown
            return
        state["draining_since"] = time.monotonic()
        arbiter.log.info(
            "SIGTERM received: readiness now fails; still serving for %.3gs "
            "(GUNICORN_SHUTDOWN_DELAY) before the graceful shutdown",
            delay,
        )
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()

    arbiter.handle_term = handle_term
