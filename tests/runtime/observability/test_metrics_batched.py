"""A histogram observed in the worker and published once a second reads exactly as the
same observations made one by one (prometheus-client's internals it uses, pinned)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Histogram

from django_k8s_runtime.observability.metrics import THREAD_WAIT_BUCKETS, BatchedHistogram

WAITS = [0.0001, 0.005, 0.0051, 0.3, 0.3, 2.5, 7.0, 30.0, 31.0, 1e9]


def samples(histogram_of) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    histogram = Histogram("wait_seconds", "A wait.", buckets=THREAD_WAIT_BUCKETS, registry=registry)
    histogram_of(histogram)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_published_observations_read_as_observed_ones() -> None:
    def one_by_one(histogram: Histogram) -> None:
        for wait in WAITS * 3:
            histogram.observe(wait)

    def batched(histogram: Histogram) -> None:
        batch = BatchedHistogram(histogram)
        for wait in WAITS:
            batch.observe(wait)
        batch.publish()
        for wait in WAITS * 2:
            batch.observe(wait)
        batch.publish()
        batch.publish()  # nothing new: nothing added

    expected = samples(one_by_one)
    assert samples(batched) == expected
    assert expected[("wait_seconds_count", ())] == 30


def test_observations_from_many_threads_are_all_kept() -> None:
    def from_threads(histogram: Histogram) -> None:
        batch = BatchedHistogram(histogram)

        def observe() -> None:
            for _ in range(20_000):
                batch.observe(0.01)

        threads = [threading.Thread(target=observe) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batch.publish()

    assert samples(from_threads)[("wait_seconds_count", ())] == 80_000
