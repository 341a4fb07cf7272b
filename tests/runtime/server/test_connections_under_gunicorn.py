"""No database connection outlives its request, on PostgreSQL's pool, under the real
server: the pattern that used to drain it (server-sent events from an async view that
queries), and the watch that recycles a worker whose pool a project's code drained."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.support.metrics import has, sample, scrape_until
from tests.support.server import Server, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


def environment(postgres, metrics_port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url(),
        "METRICS_PORT": str(metrics_port),
        "HEALTH_CHECKS": "",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "5",
        "DB_POOL_MAX_SIZE": "2",  # fewer than the streams at once
        "DB_POOL_TIMEOUT": "3",
    }


def test_async_streams_that_query_give_every_connection_back(postgres) -> None:
    """Three bursts of six server-sent event streams at once, each from an async view
    that queries before and during the stream, on a pool of two; then idle past the
    end of the background threads (2 s in the test site): the pool has every
    connection back, and views that need the database answer 200."""
    port = free_port()
    with (
        Server(environment(postgres, port)) as server,
        concurrent.futures.ThreadPoolExecutor(6) as pool,
    ):
        for burst in range(3):
            streams = [
                pool.submit(server.get, f"/_test/stream/queries?key=b{burst}-{n}&pause=0.1")
                for n in range(6)
            ]
            for stream in streams:
                response = stream.result()
                assert (response.status_code, response.content) == (200, EVENTS)
        given_back = has("db_pool_connections", 0, database="default", state="in_use")
        after_streams = scrape_until(port, given_back, 5)
        time.sleep(3)  # the idle background threads end
        answers = [server.get("/_test/db-ping").status_code for _ in range(3)]
        again = server.get("/_test/stream/queries?key=after&pause=0")
        after_idle = scrape_until(port, given_back, 5)
    assert sample(after_streams, "db_pool_connections", database="default", state="in_use") == 0
    assert answers == [200, 200, 200]
    assert (again.status_code, again.content) == (200, EVENTS)
    assert sample(after_idle, "db_pool_connections", database="default", state="in_use") == 0
    assert sample(after_idle, "db_pool_connections_leaked", database="default") == 0


def test_a_worker_whose_pool_was_leaked_dry_is_recycled(postgres) -> None:
    """A thread of the project's own keeps each of the pool's two connections: every
    database request would fail for as long as the worker lives, its probes green.
    The leak watch recycles it within its window; the fresh worker answers."""
    port = free_port()
    with Server(environment(postgres, port), leaks_expected=True) as server:
        first = server.workers()
        for _ in range(2):
            assert server.get("/_test/leak-connection").status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.workers() == first:
            time.sleep(0.2)
        replaced = server.workers()
        server.wait_until_live()
        answer = server.get("/_test/db-ping")
        restarts = scrape_until(
            port, has("gunicorn_worker_restarts_total", 1, cause="pool_leak"), 5
        )
    assert replaced != first
    assert answer.status_code == 200
    assert sample(restarts, "gunicorn_worker_restarts_total", cause="pool_leak") == 1
    log = server.log()
    assert "2 connection(s) of database default lent out for 10s or more" in log
    assert "Worker recycled after" in log
    assert "leaked: no request could have one" in log
