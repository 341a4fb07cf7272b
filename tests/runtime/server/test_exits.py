"""Why a worker exited, told to the master through memory shared across the fork."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from django_k8s_runtime.server import exits


# pytest's own threads make Python warn about fork(); the child here only writes one
# byte and leaves with os._exit, as Gunicorn's workers are forked from its master.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_cause_written_in_the_forked_worker_is_read_by_the_master() -> None:
    worker = SimpleNamespace(aborted=False)
    exits.give_note(worker)  # pre_fork, in the master
    pid = os.fork()
    if pid == 0:  # the worker
        exits.note(worker, "memory")
        exits.note(worker, "stopped")  # told to stop while recycling: still memory
        os._exit(0)
    os.waitpid(pid, 0)
    assert exits.cause_of_exit(worker) == "memory"


def test_no_note_is_a_crash_and_the_masters_kill_a_timeout() -> None:
    silent = SimpleNamespace(aborted=False)
    exits.give_note(silent)
    assert exits.cause_of_exit(silent) == "crash"
    killed = SimpleNamespace(aborted=True)  # murder_workers() sent SIGABRT
    exits.give_note(killed)
    exits.note(killed, "stopped")
    assert exits.cause_of_exit(killed) == "timeout"


def test_a_worker_without_a_note_notes_nothing() -> None:
    """Served by a Gunicorn config that is not ours: no pre_fork hook, no note."""
    exits.note(SimpleNamespace(), "max_requests")
    assert exits.cause_of_exit(SimpleNamespace(aborted=False)) == "crash"
