"""Saturation on /metrics, from real servers: request threads busy and waiting, the
wait for a thread, async requests, and the database pool, while the pod is full."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.support.metrics import has, sample, scrape, scrape_until
from tests.support.server import Server, free_port

pytestmark = pytest.mark.slow


def test_saturated_threads_show_in_the_gauges_and_the_wait_histogram() -> None:
    """Two threads, five 2-second synchronous views: two run, three wait (about 2,
    2 and 4 seconds); the metrics port answers at once meanwhile."""
    port = free_port()
    environ = {
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(5) as pool:
        idle = scrape_until(port, has("http_request_threads", 2), 5)
        slow = [pool.submit(server.get, "/_test/sleep?s=2") for _ in range(5)]
        time.sleep(0.3)
        started = time.monotonic()
        scrape(port)
        scrape_seconds = time.monotonic() - started
        full = scrape_until(port, has("http_requests_waiting_for_thread", 3), 1.5)
        assert [request.result().status_code for request in slow] == [200] * 5
        after = scrape_until(port, has("http_request_threads_busy", 0), 3)
    assert sample(idle, "http_request_threads") == 2
    assert sample(idle, "http_request_threads_busy") == 0
    assert sample(idle, "http_request_thread_wait_seconds_count") == 0
    assert sample(full, "http_request_threads_busy") == 2
    assert sample(full, "http_requests_waiting_for_thread") == 3
    assert scrape_seconds < 2, "the metrics port answers while every thread is busy"
    assert sample(after, "http_request_threads_busy") == 0
    assert sample(after, "http_requests_waiting_for_thread") == 0
    wait = "http_request_thread_wait_seconds"
    assert sample(after, f"{wait}_count") == 3  # only the requests that found no thread
    assert 6 < sample(after, f"{wait}_sum") < 12
    assert sample(after, f"{wait}_bucket", le="1.0") == 0
    assert sample(after, f"{wait}_bucket", le="2.5") == 2
    assert sample(after, f"{wait}_bucket", le="5.0") == 3


def test_a_workers_last_waits_are_published_before_it_exits() -> None:
    """One thread, two requests at once, and GUNICORN_MAX_REQUESTS=2: the second waits,
    and the worker leaves right after, often before its next once-a-second publishing:
    its waits are published when it has finished serving. Three workers in a row."""
    port = free_port()
    environ = {
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "1",
        "GUNICORN_MAX_REQUESTS": "2",
    }
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            (worker,) = server.wait_for_workers(1)
            pair = [pool.submit(server.get, "/_test/sleep?s=0.3") for _ in range(2)]
            assert [request.result().status_code for request in pair] == [200, 200]
            deadline = time.monotonic() + 20
            while worker in server.workers() and time.monotonic() < deadline:
                time.sleep(0.05)
        text = scrape(port)  # the scrape is the fourth worker's first request
    assert sample(text, "gunicorn_worker_restarts_total", cause="max_requests") == 3
    assert sample(text, "http_request_thread_wait_seconds_count") == 3


def test_async_requests_in_flight_hold_no_request_thread() -> None:
    port = free_port()
    environ = {"METRICS_PORT": str(port), "HEALTH_CHECKS": "", "GUNICORN_WORKERS": "2"}
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(6) as pool:
        waiting = [pool.submit(server.get, "/_test/async-sleep?s=3") for _ in range(6)]
        text = scrape_until(port, has("http_async_requests_in_flight", 6), 2.5)
        assert [request.result().status_code for request in waiting] == [200] * 6
        after = scrape_until(port, has("http_async_requests_in_flight", 0), 3)
    assert sample(text, "http_async_requests_in_flight") == 6  # summed over both workers
    assert sample(text, "http_request_threads") == 10
    assert sample(text, "http_request_threads_busy") == 0
    assert sample(after, "http_async_requests_in_flight") == 0


@pytest.mark.postgres
def test_an_exhausted_database_pool_shows_its_waiting_requests(postgres) -> None:
    """Five threads, a pool of two connections, five views each holding one for 2.5 s:
    two hold them, three wait for one."""
    port = free_port()
    environ = {
        "DATABASE_URL": postgres.url(),
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "5",
        "DB_POOL_MAX_SIZE": "2",
    }
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(5) as pool:
        holding = [pool.submit(server.get, "/_test/db-sleep?s=2.5") for _ in range(5)]
        full = scrape_until(port, has("db_pool_requests_waiting", 3, database="default"), 2)
        assert [request.result().status_code for request in holding] == [200] * 5
        idle = has("db_pool_connections", 0, database="default", state="in_use")
        after = scrape_until(port, idle, 3)
    db = {"database": "default"}
    assert sample(full, "db_pool_requests_waiting", **db) == 3
    assert sample(full, "db_pool_connections", **db, state="in_use") == 2
    assert sample(full, "db_pool_connections_max", **db) == 2
    assert sample(full, "http_request_threads_busy") == 5  # the threads wait on the pool
    assert sample(after, "db_pool_requests_waiting", **db) == 0
    assert sample(after, "db_pool_connections", **db, state="in_use") == 0
    assert sample(after, "db_pool_connections", **db, state="idle") == 2
    assert sample(after, "db_pool_requests_queued_total", **db) >= 3
    assert sample(after, "db_pool_wait_seconds_total", **db) > 5  # 2.5 + 2.5 + 5, roughly
    assert sample(after, "db_pool_requests_failed_total", **db) == 0
