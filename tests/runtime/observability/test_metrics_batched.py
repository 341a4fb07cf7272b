"""A histogram observed in the worker and published once a second reads exactly as the
same observations made one by one (prometheus-client's internals it uses, pinned)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Histogram

from django_k8s_runtime.observability.batched import BatchedHistogram
from django_k8s_runtime.observability.metrics import THREAD_WAIT_BUCKETS

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


# The request metrics: a scrape after the same traffic, recorded one by one as
# before (prometheus-client's shared files written at each request) and as now (kept
# in the worker, published), in a process of its own each, as a worker is.
TRAFFIC = """
import json, os, sys
from django_k8s_runtime.observability.metrics import Metrics
from django_k8s_runtime.observability.multiprocess import registry as multiprocess_registry
from prometheus_client import generate_latest

metrics = Metrics()
requests = json.loads(sys.argv[2])
for method, route, status, seconds in requests:
    scope = {"method": method, "route": route}
    if sys.argv[1] == "one-by-one":  # what each request did before
        metrics.in_flight.inc()
        metrics.in_flight.dec()
        known = method if method in ("GET", "POST") else "other"
        labels = (known, route or "<unmatched>", str(status))
        metrics.requests.labels(*labels).inc()
        metrics.duration.labels(*labels).observe(seconds)
    else:
        metrics.request_started()
        metrics.request_finished(scope, status, seconds)
metrics.publish()
sys.stdout.write(generate_latest(multiprocess_registry()).decode())
"""

REQUESTS = [
    ("GET", "/items", 200, 0.004),
    ("GET", "/items", 200, 0.011),
    ("POST", "/items", 201, 0.3),
    ("GET", None, 404, 0.0005),
    ("BREW", "/items", 405, 12.0),
    ("GET", "/items", 200, 0.25),  # on a bucket's bound
    ("GET", "/health", 200, 1e-6),
] * 7


def scrape_after(way: str, directory) -> str:
    import json
    import os
    import subprocess
    import sys

    directory.mkdir()
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", TRAFFIC, way, json.dumps(REQUESTS)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_a_scrape_reads_the_same_as_when_each_request_wrote_its_own(tmp_path) -> None:
    before = scrape_after("one-by-one", tmp_path / "before")
    after = scrape_after("kept-and-published", tmp_path / "after")
    assert 'http_requests_total{method="other",route="/items",status="405"} 7.0' in after
    assert "http_requests_in_flight 0.0" in after
    # The same lines; the families come in the order their files are read.
    assert sorted(after.splitlines()) == sorted(before.splitlines())
