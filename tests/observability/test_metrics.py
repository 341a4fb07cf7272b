"""/metrics from a real multi-worker server: sums across workers, its own port only."""

from __future__ import annotations

import concurrent.futures
import re
import time

import httpx
import pytest

from tests.support.server import Server, free_port

pytestmark = pytest.mark.slow
HTTPS = {"x-forwarded-proto": "https"}


def scrape(server: Server, port: int) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = (
        rf"^{re.escape(name)}{{{re.escape(selector)}}} (\S+)$"
        if labels
        else rf"^{re.escape(name)} (\S+)$"
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no {name}{{{selector}}} in:\n{text}"
    return float(match.group(1))


def test_counters_sum_across_workers_and_survive_recycling() -> None:
    port = free_port()
    environ = {
        "GUNICORN_WORKERS": "2",
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "GUNICORN_MAX_REQUESTS": "15",
    }
    with Server(environ) as server:
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(headers=HTTPS, limits=no_keepalive) as client:
            pids = [client.get(server.url("/_test/pid")).json()["pid"] for _ in range(100)]
        time.sleep(1)  # let the last recycled workers exit
        text = scrape(server, port)
    # Served by both workers and at least one replacement. (Uvicorn notices its
    # request limit on its 0.1 s tick, so a fast worker serves some more first.)
    assert len(set(pids)) >= 3
    assert (
        sample(text, "http_requests_total", method="GET", route="/_test/pid", status="200") == 100
    )
    assert (
        sample(
            text,
            "http_request_duration_seconds_count",
            method="GET",
            route="/_test/pid",
            status="200",
        )
        == 100
    )
    assert sample(text, "gunicorn_worker_restarts_total") >= len(set(pids)) - 2


def test_routes_are_patterns_and_statuses_are_labels() -> None:
    port = free_port()
    with Server({"METRICS_PORT": str(port), "HEALTH_CHECKS": ""}) as server:
        server.get("/api/items")  # no table: 500 on SQLite without migrations is fine here
        server.get("/admin/example/item/42/change/")
        server.get("/no/such/page")
        httpx.get(server.url("/health"))
        text = scrape(server, port)
    assert (
        'route="/admin/<path:object_id>/change/"' in text
        or 'route="/admin/example/item/<path:object_id>/change/"' in text
    )
    assert "/42/" not in text
    assert sample(text, "http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert sample(text, "http_requests_total", method="GET", route="/health", status="200") == 1
    assert sample(text, "app_ready") == 1


def test_in_flight_requests_are_counted_across_workers() -> None:
    port = free_port()
    with (
        Server({"GUNICORN_WORKERS": "2", "METRICS_PORT": str(port), "HEALTH_CHECKS": ""}) as server,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        slow = [pool.submit(server.get, "/_test/sleep?s=3") for _ in range(4)]
        time.sleep(1.5)
        in_flight = sample(scrape(server, port), "http_requests_in_flight")
        assert all(request.result().status_code == 200 for request in slow)
        assert sample(scrape(server, port), "http_requests_in_flight") == 0
    assert in_flight == 4


def test_metrics_are_never_served_on_the_public_port() -> None:
    port = free_port()
    with Server({"METRICS_PORT": str(port), "HEALTH_CHECKS": ""}) as server:
        assert server.get("/metrics").status_code == 404
        assert "http_requests_total" not in server.get("/metrics").text
        other = httpx.get(f"http://127.0.0.1:{port}/api/hello", headers=HTTPS)
        assert other.status_code == 404  # the metrics port serves only /metrics


def test_metrics_can_be_turned_off() -> None:
    with Server({"METRICS_PORT": "0", "HEALTH_CHECKS": ""}) as server:
        assert f"Listening at: http://127.0.0.1:{server.port} (" in server.log()


def test_sighup_keeps_the_counts(tmp_path) -> None:
    import signal

    port = free_port()
    directory = tmp_path / "metrics"
    environ = {
        "GUNICORN_WORKERS": "2",
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    with Server(environ) as server:
        old = set(server.wait_for_workers(2))
        for _ in range(7):
            server.get("/api/hello")
        server.signal(signal.SIGHUP)  # Gunicorn re-reads its config module
        deadline = time.monotonic() + 30
        while (set(server.workers()) & old or len(server.workers()) != 2) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        server.get("/api/hello")
        text = scrape(server, port)
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert sample(text, "http_requests_total", method="GET", route="/api/hello", status="200") == 8
    assert sample(text, "gunicorn_worker_restarts_total") == 2
    assert directory.is_dir()  # the operator's directory stays (emptied at the next start)


def test_the_directory_made_at_start_is_removed_at_exit() -> None:
    import signal
    from pathlib import Path

    shm = Path("/dev/shm")
    before = set(shm.glob("prometheus-*"))
    with Server({"METRICS_PORT": str(free_port()), "HEALTH_CHECKS": ""}) as server:
        made = set(shm.glob("prometheus-*")) - before
        assert len(made) == 1
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert not made.pop().exists()


def test_a_clients_faults_are_client_statuses_under_their_route() -> None:
    """A malformed body (the server answers 400) and a client that leaves mid-body
    (499) are the client's doing: no 500 for anyone to drive an alert with."""
    import socket

    port = free_port()
    environ = {"METRICS_PORT": str(port), "HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}
    head = "POST /_test/echo HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
    with Server(environ) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"{head}Content-Length: 1000\r\n\r\n0123456789".encode())
            time.sleep(0.5)
        time.sleep(1)
        text = scrape(server, port)
        log = server.log()
    labels = {"method": "POST", "route": "/_test/echo"}
    assert sample(text, "http_requests_total", **labels, status="400") == 1
    assert sample(text, "http_requests_total", **labels, status="499") == 1
    assert 'status="500"' not in text
    assert '"status": 500' not in log


def test_connections_the_server_drops_are_counted_by_reason() -> None:
    import socket

    port = free_port()
    environ = {
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "GUNICORN_WORKERS": "1",
        "REQUEST_HEAD_TIMEOUT": "1",
    }
    with Server(environ) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /api/hello HTTP/1.1\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /api/hello HTTP/1.1\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 431 ")
        text = scrape(server, port)
    assert sample(text, "http_connections_dropped_total", reason="head_timeout") == 1
    assert sample(text, "http_connections_dropped_total", reason="head_too_large") == 1
