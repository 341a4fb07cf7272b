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
(the documentation's Serving page, "Memory") errs on the safe side.

**Its replacement starts while it drains.** Gunicorn starts a worker's successor
only once the worker has exited; a worker recycled for memory first finishes its
requests and closes its sockets (up to the graceful timeout), and with one worker
the pod served nothing meanwhile (9.6 s in the tests). Here the master counts a
worker that has noted ``memory`` (server/exits.py) as gone, within a second
(:func:`replace_while_draining`), so for that while the pod has one worker more,
which the memory limit's sum already makes room for.
"""

from __future__ import annotations

import os
from typing import Any

from django_k8s_runtime.server import exits

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


def replace_while_draining(arbiter: Any) -> None:
    """In the master (the ``when_ready`` hook): Gunicorn's ``manage_workers``, which
    it runs at least once a second, spawns the successor of a worker draining for
    memory at once, and does not stop it as one worker too many.

    Upstream counts every worker in ``WORKERS`` until it has exited. Here the count it
    aims at (``_num_workers``, set without the ``nworkers_changed`` hook: it is not an
    operator's change) is raised by the workers recycling for memory, for the call."""
    manage_workers = arbiter.manage_workers

    def manage_counting_the_recycled_as_gone() -> None:
        draining = sum(
            1 for worker in list(arbiter.WORKERS.values()) if exits.noted(worker) == "memory"
        )
        if not draining:
            manage_workers()
            return
        arbiter._num_workers += draining
        try:
            manage_workers()
        finally:
            arbiter._num_workers -= draining

    arbiter.manage_workers = manage_counting_the_recycled_as_gone
