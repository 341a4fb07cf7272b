"""A worker's memory, for recycling it before the OOM killer takes the pod.

Python rarely gives memory back to the system, and a leak in a view or a library
grows a worker until the container's limit, where the kernel kills the whole pod
with every request in flight. ``WORKER_MAX_MEMORY_MIB`` replaces a worker that
has grown past it the way ``GUNICORN_MAX_REQUESTS`` does: it stops accepting,
finishes what it holds and exits, and Gunicorn starts a fresh one.

The measure is the resident set (RSS, as ``ps`` and Granian's
``--workers-max-rss`` show it), read from ``/proc/self/statm`` once a second on
the worker's event loop: about 10 µs, never per request. It counts the pages a
preloaded worker still shares with the master, so the workers' RSS add up to
more than the container is charged for: a limit derived from the container's
(docs/serving.md, "Memory") errs on the safe side.
"""

from __future__ import annotations

import os

STATM = "/proc/self/statm"
CHECK_SECONDS = 1.0
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident memory now."""
    with open(STATM, "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def measurable() -> bool:
    """Whether this system tells a process its resident memory (Linux does)."""
    try:
        resident_bytes()
    except (OSError, ValueError, IndexError):
        return False
    return True
