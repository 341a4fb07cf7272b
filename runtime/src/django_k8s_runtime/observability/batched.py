"""A histogram's observations kept in the process and added to prometheus_client's
shared files all at once, for the request metrics (``metrics.Metrics``)."""

from __future__ import annotations

import bisect
import threading
from typing import Any


class BatchedHistogram:
    """Observations of a histogram kept in this process, by labels, and added to it by
    :meth:`publish`, all at once; with ``counter``, the count of each set of labels is
    added to that counter too (``http_requests_total`` beside the durations).

    prometheus_client's multiprocess ``observe()`` takes a lock and writes two values
    to a memory-mapped file (microseconds each), and ``labels()`` takes another lock
    to find the child. Here an observation is a bisection and three additions under a
    lock of its own; :meth:`publish` adds each bucket's count with what ``observe()``
    itself uses (``_sum``, ``_buckets``, ``_upper_bounds``: private, pinned with
    prometheus-client and checked by this module's tests)."""

    def __init__(self, histogram: Any, counter: Any = None) -> None:
        self._histogram = histogram
        self._counter = counter
        self._bounds = list(histogram._upper_bounds)  # ends with +Inf
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, ...], list[Any]] = {}

    def observe(self, amount: float, labels: tuple[str, ...] = ()) -> None:
        index = bisect.bisect_left(self._bounds, amount)  # the first bound >= amount
        with self._lock:
            pending = self._pending.get(labels)
            if pending is None:
                pending = self._pending[labels] = [0.0, [0] * len(self._bounds)]
            pending[0] += amount
            pending[1][index] += 1

    def publish(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for labels, (total, counts) in pending.items():
            histogram = self._histogram.labels(*labels) if labels else self._histogram
            histogram._sum.inc(total)
            for bucket, count in zip(histogram._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)
            if self._counter is not None:
                self._counter.labels(*labels).inc(sum(counts))
