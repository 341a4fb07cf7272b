"""The probes as the kubelet calls them, against real Gunicorn and a real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import statistics
import threading
import time

import httpx
import pytest

from tests.support.redis import RedisServer
from tests.support.requirements import require_tool
from tests.support.server import Server

KUBELET_HOST = {"host": "10.0.0.7:8000"}  # the kubelet sends the pod IP
# Like the kubelet: a new connection for every probe (no keep-alive).
KUBELET = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


@pytest.fixture(scope="module")
def server(postgres):
    """Production settings (HTTPS on, so SECURE_SSL_REDIRECT is on) and PostgreSQL."""
    with Server({"DATABASE_URL": postgres.url()}) as running:
        yield running


def probe(server: Server, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    return KUBELET.request(method, server.url(path), headers=headers or KUBELET_HOST)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/", "/health/live/"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_probes_answer_the_kubelet_over_plain_http_with_any_host(
    server: Server, path: str, method: str
) -> None:
    response = probe(server, path, method)
    assert response.status_code == 200  # not 400 (Host), not 301 (https), not a slash redirect
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    if method == "HEAD":
        assert response.content == b""
        assert int(response.headers["content-length"]) > 0


def test_readiness_reports_each_check(server: Server) -> None:
    body = probe(server, "/health").json()
    assert body["status"] == "ok"
    (check,) = body["checks"]
    assert check["name"] == "database:default"
    assert check["ok"] is True
    assert isinstance(check["duration_ms"], float)
    assert probe(server, "/health/live").json() == {"status": "ok"}


def test_every_other_path_keeps_its_protection(server: Server) -> None:
    assert (
        probe(
            server, "/_test/hello", **{"host": "10.0.0.7:8000", "x-forwarded-proto": "https"}
        ).status_code
        == 400
    )
    assert probe(server, "/_test/hello", host="localhost").status_code == 301  # to https
    assert probe(server, "/healthz", **KUBELET_HOST).status_code == 400
    assert probe(server, "/health", "POST").status_code == 405


@pytest.mark.slow
def test_liveness_stays_fast_while_every_request_thread_is_busy(server: Server) -> None:
    """Synchronous views each occupy a thread; the probe runs on the event loop."""
    idle = [_timed(server, "/health/live") for _ in range(20)]
    # Every thread of both workers sleeping (GUNICORN_THREADS=5), and as many
    # requests again waiting for one.
    busy_requests = 2 * 2 * 5
    with concurrent.futures.ThreadPoolExecutor(busy_requests) as pool:
        sleepers = [pool.submit(server.get, "/_test/sleep?s=3") for _ in range(busy_requests)]
        time.sleep(1.5)  # let them all be running
        loaded = [_timed(server, "/health/live") for _ in range(20)]
        ready = probe(server, "/health")
        assert all(sleeper.result().status_code == 200 for sleeper in sleepers)
    assert ready.status_code == 200
    print(
        f"\n/health/live median latency: idle {statistics.median(idle) * 1000:.1f} ms, "
        f"with {busy_requests} busy sync views {statistics.median(loaded) * 1000:.1f} ms, "
        f"max {max(loaded) * 1000:.1f} ms"
    )
    assert max(loaded) < 0.25  # generous: about a millisecond in practice, see make bench


def _timed(server: Server, path: str) -> float:
    started = time.perf_counter()
    assert probe(server, path).status_code == 200
    return time.perf_counter() - started


@pytest.mark.slow
def test_database_outage_fails_readiness_only_and_recovers_without_restart(own_postgres) -> None:
    environ = {"DATABASE_URL": own_postgres.url(), "GUNICORN_WORKERS": "1"}
    with Server(environ) as server:
        (worker,) = server.wait_for_workers(1)
        assert probe(server, "/health").status_code == 200

        own_postgres.stop()
        stopped = time.monotonic()
        statuses = _poll_until(server, 503, within=10)
        to_503 = time.monotonic() - stopped
        body = probe(server, "/health").json()
        assert body["status"] == "unavailable"
        assert body["checks"][0] == {**body["checks"][0], "name": "database:default", "ok": False}
        for _ in range(10):  # many probes during the outage...
            assert probe(server, "/health").status_code == 503
            assert probe(server, "/health/live").status_code == 200
        _assert_no_details(probe(server, "/health").text, own_postgres.port)

        own_postgres.start()
        restarted = time.monotonic()
        _poll_until(server, 200, within=10)
        to_200 = time.monotonic() - restarted
        assert server.workers() == [worker]  # recovered without a restart
        print(
            f"\ndatabase stopped -> /health 503 after {to_503:.2f}s ({statuses} probes); "
            f"started -> 200 after {to_200:.2f}s"
        )
        # ...but one log line per state change, with the reason.
        lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
        failing = [line for line in lines if "fails" in line["message"]]
        passing = [
            line for line in lines if "readiness check database:default passes" in line["message"]
        ]
        assert len(failing) == 1, failing
        assert "OperationalError" in failing[0]["message"]
        assert len(passing) == 2  # at start, and after the recovery


@pytest.mark.slow
def test_a_database_that_never_answers_fails_readiness_within_the_bound() -> None:
    """A listening socket that accepts connections and never replies: the probe must
    not hang on it (HEALTH_CHECK_TIMEOUT=0.5 s by default)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes handshakes; nothing ever answers
        port = silent.getsockname()[1]
        url = f"postgres://app:secret@127.0.0.1:{port}/app"
        with Server({"DATABASE_URL": url, "GUNICORN_WORKERS": "1"}) as server:
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                assert probe(server, "/health").status_code == 503
                timings.append(time.perf_counter() - started)
            assert probe(server, "/health/live").status_code == 200
        print(f"\nblack-holed database: /health 503 in {max(timings) * 1000:.0f} ms at most")
        assert max(timings) < 1.5


@pytest.mark.slow
def test_readiness_fails_once_a_graceful_shutdown_has_begun(postgres) -> None:
    environ = {"DATABASE_URL": postgres.url(), "GUNICORN_SHUTDOWN_DELAY": "3"}
    with Server(environ) as server:
        assert probe(server, "/health").status_code == 200
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        response = probe(server, "/health")
        assert response.status_code == 503
        assert response.json()["status"] == "shutting down"
        assert probe(server, "/health/live").status_code == 200
        assert server.get("/_test/hello").status_code == 200  # still serving during the delay
        assert server.wait(timeout=30) == 0


@pytest.mark.slow
def test_the_cache_check_runs_when_configured(postgres) -> None:
    require_tool("redis-server")
    with RedisServer() as redis_server:
        environ = {
            "DATABASE_URL": postgres.url(),
            "CACHE_URL": redis_server.url,
            "HEALTH_CHECKS": "database,cache",
            "GUNICORN_WORKERS": "1",
            "HEALTH_CACHE_SECONDS": "0",
        }
        with Server(environ) as server:
            # The first checks open their first connections; on a busy machine that
            # can outlast HEALTH_CHECK_TIMEOUT once.
            deadline = time.monotonic() + 10
            while (body := probe(server, "/health").json())["status"] != "ok":
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
            assert [c["name"] for c in body["checks"]] == ["database:default", "cache"]
            redis_server.stop()
            response = probe(server, "/health")
            assert response.status_code == 503
            assert [c["ok"] for c in response.json()["checks"]] == [True, False]
            _assert_no_details(response.text, redis_server.port)


@pytest.mark.slow
def test_no_checks_when_none_are_configured() -> None:
    with Server({"HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}) as server:
        assert probe(server, "/health").json() == {"status": "ok", "checks": []}


def _poll_until(server: Server, status: int, within: float) -> int:
    deadline = time.monotonic() + within
    count = 0
    while time.monotonic() < deadline:
        count += 1
        if probe(server, "/health").status_code == status:
            return count
        time.sleep(0.05)
    raise AssertionError(f"/health did not turn {status} within {within}s:\n{server.log()}")


def _assert_no_details(body: str, port: int) -> None:
    for leak in ("Error", "error", "refused", "127.0.0.1", str(port), "app-password", "Traceback"):
        assert leak not in body, f"{leak!r} leaked into the probe response: {body}"


def test_probe_helpers_cannot_pass_vacuously() -> None:
    with pytest.raises(AssertionError):
        _assert_no_details('{"status": "connection refused"}', 5432)
    assert threading.current_thread() is threading.main_thread()
