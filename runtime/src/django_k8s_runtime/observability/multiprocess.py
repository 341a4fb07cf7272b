"""prometheus_client's multiprocess directory, for the life of one server.

Each worker is its own process, so each would count on its own; prometheus_client's
multiprocess mode has every process write its numbers to files in one directory
(on a tmpfs), and a scrape of any worker sums them (:func:`registry`). The directory
must be known before prometheus_client is first imported, which is why the Gunicorn
config module calls :func:`prepare_directory` before the app is loaded.

The directory is removed by the server's last process, whoever that is: its lock
(a shared ``flock``) is held by the master and, through the fork, by every worker;
each process lets go as it exits, and the last one out removes it. One left by a
server killed whole is removed by the next start on the machine, which sees that no
process holds its lock.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENVIRONMENT_KEY = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads this


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


def registry() -> CollectorRegistry:
    """A registry that reads every process's files: what a scrape reports."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
