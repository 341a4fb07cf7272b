"""Database connections a worker's pools lent out and nobody gives back.

No thread of the runtime's keeps a connection between two jobs
(``database.give_back_connections``), and a request's thread holds at most one
per database, so a pool never has more connections out than the runtime has
threads busy. More than that, at every sample for ``WINDOW_SECONDS``, were lent
to code outside the request path for good (a thread of the project's own, a
library's): a leak. Honest load, however heavy, never shows one, so what the
watch does cannot flap:

* a leak gets one warning line (again when it grows) and the gauge
  ``db_pool_connections_leaked``;
* a pool leaked dry (every connection it may open is out) would answer every
  request that needs the database with a 500 after ``DB_POOL_TIMEOUT``, for as
  long as the worker lives, while its probes pass: the worker is recycled instead,
  as for memory (it finishes its requests and a fresh one takes its place);
* a worker that has served its last request with connections still out says so
  at error level: nothing can be holding them then.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 10
CHECK_SECONDS = 1.0

Stats = dict[str, dict[str, int]]  # psycopg_pool's get_stats(), by database alias


class LeakWatch:
    """``stats`` gives the worker's pools now; ``busy`` its threads running a job;
    ``recycle(cause, why)`` replaces the worker; ``record(leaked)`` publishes the
    gauge (by database). :meth:`check` runs once a second, :meth:`at_exit` once."""

    def __init__(
        self,
        *,
        stats: Callable[[], Stats],
        busy: Callable[[], int],
        recycle: Callable[[str, str], None],
        record: Callable[[dict[str, int]], None] | None = None,
        window: int = WINDOW_SECONDS,
    ) -> None:
        self._stats = stats
        self._busy = busy
        self._recycle = recycle
        self._record = record
        self._window = window
        self._history: dict[str, deque[int]] = {}
        self._reported: dict[str, int] = {}

    def check(self) -> None:
        stats = self._stats()
        if not stats:
            return
        busy = self._busy()
        leaked = {}
        for database, pool in stats.items():
            history = self._history.setdefault(database, deque(maxlen=self._window))
            history.append(max(0, _lent(pool) - busy))
            leaked[database] = min(history) if len(history) == self._window else 0
        if self._record is not None:
            self._record(leaked)
        for database, count in leaked.items():
            self._report(database, count, stats[database])

    def _report(self, database: str, count: int, pool: dict[str, int]) -> None:
        if count > self._reported.get(database, 0):
            logger.warning(
                "%d connection(s) of database %s lent out for %ds or more with no request "
                "to hold them: a leak (a thread or library of the project's that keeps a "
                "Django connection; close it with django.db.close_old_connections())",
                count,
                database,
                self._window,
            )
        self._reported[database] = count
        maximum = pool.get("pool_max", 0)
        if count and count >= maximum:
            self._recycle(
                "pool_leak",
                f"every connection the pool of database {database} may open ({maximum}) "
                "leaked: no request could have one",
            )

    def at_exit(self) -> None:
        """The worker has served its last request: any connection still out is lost."""
        stats = self._stats()
        if not stats or self._busy():  # a quick exit leaves threads running: they hold them
            return
        for database, pool in stats.items():
            lent = _lent(pool)
            if lent:
                logger.error(
                    "%d connection(s) of database %s were lent out and never given back "
                    "when the worker had served its last request (a leak)",
                    lent,
                    database,
                )


def _lent(pool: dict[str, int]) -> int:
    return pool.get("pool_size", 0) - pool.get("pool_available", 0)
