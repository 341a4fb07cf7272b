"""Why a worker exited, as the master learns it: the ``cause`` of
``gunicorn_worker_restarts_total``.

Gunicorn's ``child_exit`` hook gets the worker but not its exit status, and a
worker stopped by the master dies of the SIGTERM it re-raises (Uvicorn's way), so
the status would say little anyway. Instead the master gives each worker, before
forking it, one byte of memory shared with it (:class:`ExitNote`); the worker
writes there why it is leaving when it decides to, and the master reads it when
the worker is gone:

* ``max_requests``: it served ``GUNICORN_MAX_REQUESTS`` (plus jitter);
* ``memory``: it grew past ``WORKER_MAX_MEMORY_MIB``;
* ``pool_leak``: its database pool was leaked dry (``leaks.py``);
* ``stopped``: the master asked it to stop (SIGTERM, SIGINT, SIGQUIT: a shutdown,
  a reload, one worker fewer);
* ``timeout``: the master killed it because its event loop was blocked for
  ``GUNICORN_TIMEOUT`` (the master knows that itself);
* ``crash``: it left no note: killed by a signal (the kernel's OOM killer sends
  SIGKILL), or exited on an error.
"""

from __future__ import annotations

import mmap
from typing import Any

WORKER_CAUSES = ("max_requests", "memory", "stopped", "pool_leak")  # what a worker notes
CAUSES = (*WORKER_CAUSES, "timeout", "crash")
_CODES = {cause: code for code, cause in enumerate(WORKER_CAUSES, start=1)}


class ExitNote:
    """One byte shared by the master and one worker (anonymous shared memory made
    before the fork). The first cause written stays: a worker recycling for memory
    that is then told to stop is still counted as ``memory``."""

    def __init__(self) -> None:
        self._byte = mmap.mmap(-1, 1)

    def write(self, cause: str) -> None:
        if not self._byte[0]:
            self._byte[0] = _CODES[cause]

    def read(self) -> str | None:
        code = self._byte[0]
        return WORKER_CAUSES[code - 1] if code else None

    def close(self) -> None:
        self._byte.close()


def give_note(worker: Any) -> None:
    """Gunicorn's ``pre_fork`` hook, in the master: a fresh note for this worker."""
    worker.exit_note = ExitNote()


def note(worker: Any, cause: str) -> None:
    """In the worker: say why it is leaving (nothing where no master gave a note)."""
    exit_note = getattr(worker, "exit_note", None)
    if exit_note is not None:
        exit_note.write(cause)


def noted(worker: Any) -> str | None:
    """In the master: what a worker still running has noted (``memory`` while it
    drains after passing its limit), or None."""
    exit_note = getattr(worker, "exit_note", None)
    return exit_note.read() if exit_note is not None else None


def cause_of_exit(worker: Any) -> str:
    """Gunicorn's ``child_exit`` hook, in the master: why this worker left."""
    exit_note = getattr(worker, "exit_note", None)
    noted = None
    if exit_note is not None:
        noted = exit_note.read()
        exit_note.close()
    if getattr(worker, "aborted", False):  # the master's SIGABRT for a blocked loop
        return "timeout"
    return noted or "crash"
