"""/metrics from a real multi-worker server: sums across workers, its own port only."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.support import metrics
from tests.support.metrics import sample, total
from tests.support.server import GUNICORN_COMMAND, Server, free_port, run

pytestmark = pytest.mark.slow
HTTPS = {"x-forwarded-proto": "https"}


def scrape(server: Server, port: int) -> str:
    return metrics.scrape_published(port)


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
            # Until a replacement has served too, at least 100 requests. Uvicorn notices
            # its request limit on its 0.1 s tick, so a fast worker serves many more
            # first: paced, the requests outlast a few ticks.
            pids: list[int] = []
            while (len(pids) < 100 or len(set(pids)) < 3) and len(pids) < 1000:
                pids.append(client.get(server.url("/_test/pid")).json()["pid"])
                time.sleep(0.005)
        time.sleep(1)  # let the last recycled workers exit
        text = scrape(server, port)
    sent = len(pids)
    assert len(set(pids)) >= 3  # both workers and at least one replacement
    assert (
        sample(text, "http_requests_total", method="GET", route="/_test/pid", status="200") == sent
    )
    assert (
        sample(
            text,
            "http_request_duration_seconds_count",
            method="GET",
            route="/_test/pid",
            status="200",
        )
        == sent
    )
    restarts = "gunicorn_worker_restarts_total"
    assert total(text, restarts) >= len(set(pids)) - 2
    assert sample(text, restarts, cause="max_requests") >= len(set(pids)) - 2


def test_routes_are_patterns_and_statuses_are_labels() -> None:
    port = free_port()
    with Server({"METRICS_PORT": str(port), "HEALTH_CHECKS": ""}) as server:
        server.get("/_test/groups")  # no table: 500 on SQLite without migrations is fine here
        server.get("/admin/auth/user/42/change/")
        server.get("/no/such/page")
        httpx.get(server.url("/health"))
        text = scrape(server, port)
    assert (
        'route="/admin/<path:object_id>/change/"' in text
        or 'route="/admin/auth/user/<path:object_id>/change/"' in text
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
        slow = [pool.submit(server.get, "/_test/sleep?s=5") for _ in range(4)]
        time.sleep(0.5)
        # Each worker publishes its count once a second.
        in_flight = sample(
            metrics.scrape_until(port, metrics.has("http_requests_in_flight", 4), 4),
            "http_requests_in_flight",
        )
        assert all(request.result().status_code == 200 for request in slow)
        after = metrics.scrape_until(port, metrics.has("http_requests_in_flight", 0), 4)
        assert sample(after, "http_requests_in_flight") == 0
    assert in_flight == 4


def test_metrics_are_never_served_on_the_public_port() -> None:
    port = free_port()
    with Server({"METRICS_PORT": str(port), "HEALTH_CHECKS": ""}) as server:
        assert server.get("/metrics").status_code == 404
        assert "http_requests_total" not in server.get("/metrics").text
        other = httpx.get(f"http://127.0.0.1:{port}/_test/hello", headers=HTTPS)
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
            server.get("/_test/hello")
        server.signal(signal.SIGHUP)  # Gunicorn re-reads its config module
        deadline = time.monotonic() + 30
        while (set(server.workers()) & old or len(server.workers()) != 2) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        server.get("/_test/hello")
        text = scrape(server, port)
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert (
        sample(text, "http_requests_total", method="GET", route="/_test/hello", status="200") == 8
    )
    assert total(text, "gunicorn_worker_restarts_total") == 2
    assert sample(text, "gunicorn_worker_restarts_total", cause="stopped") == 2
    assert directory.is_dir()  # the operator's directory stays (emptied at the next start)


def test_the_directory_made_at_start_is_removed_at_exit(tmp_path) -> None:
    import signal

    shm = tmp_path / "shm"
    with Server({"METRICS_PORT": str(free_port()), "HEALTH_CHECKS": ""}, shm=shm) as server:
        (made,) = shm.glob("prometheus-*")
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert not made.exists()


def test_a_directory_holding_anything_but_metrics_files_is_refused_and_left_alone(
    tmp_path,
) -> None:
    """Start-up used to remove everything named *.db in it, an SQLite file and a
    directory alike, while check-env said the configuration was fine."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "app.db").write_bytes(b"SQLite format 3\x00")
    (directory / "cache.db").mkdir()
    (directory / "cache.db" / "entry").write_text("kept")
    (directory / "counter_123.db").write_bytes(b"")
    environ = {"METRICS_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    expected = (
        f"configuration error: PROMETHEUS_MULTIPROC_DIR='{directory}' is not valid: it holds "
        "entries other than metrics files (app.db, cache.db), and only those are removed at "
        "start; name a directory of its own."
    )
    started = run(GUNICORN_COMMAND, environ)
    checked = run(["python", "-m", "django_k8s_runtime", "check-env"], environ)
    assert started.returncode != 0
    assert (started.stdout + started.stderr).strip() == expected
    assert checked.returncode == 1
    assert expected in checked.stdout.splitlines(), checked.stdout
    assert sorted(entry.name for entry in directory.iterdir()) == [
        "app.db",
        "cache.db",
        "counter_123.db",
    ]
    assert (directory / "cache.db" / "entry").read_text() == "kept"


def test_metrics_files_of_an_earlier_server_are_removed_at_start(tmp_path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    earlier = ["counter_1.db", "gauge_livesum_1.db", "gauge_mostrecent_1.db", "histogram_1.db"]
    for name in earlier:
        (directory / name).write_bytes(b"")
    environ = {
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "HEALTH_CHECKS": "",
    }
    with Server(environ):
        assert not {entry.name for entry in directory.iterdir()} & set(earlier)


@pytest.mark.parametrize("failure", ["bind", "project variable", "GUNICORN_CMD_ARGS"])
def test_a_failed_start_leaves_no_metrics_directory(tmp_path, failure: str) -> None:
    import socket

    shm = tmp_path / "shm"
    environ = {"METRICS_PORT": str(free_port()), "HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}
    taken = socket.socket()
    if failure == "bind":
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environ["GUNICORN_PORT"] = str(taken.getsockname()[1])
    elif failure == "project variable":
        environ["DJANGO_DEBUG"] = "maybe"  # found when the preloaded application is imported
    else:
        environ["GUNICORN_CMD_ARGS"] = "--timeout -5"  # refused by Gunicorn's validator
    server = Server(environ, shm=shm)
    if failure == "project variable":
        server.environ.pop("DJANGO_SETTINGS_MODULE")  # the documented production command
    with taken:
        server.start(wait=False)
        try:
            assert server.wait(timeout=60) != 0
        finally:
            server.stop()
    assert list(shm.glob("prometheus-*")) == [], server.log()


def test_a_directory_left_by_a_server_killed_whole_is_removed_by_the_next_start(
    tmp_path,
) -> None:
    """Killed with every worker (SIGKILL to the process group), a server removes
    nothing; the next start on the machine sees that no process holds the
    directory's lock and removes it."""
    import os
    import signal

    shm = tmp_path / "shm"
    environ = {"HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}
    first = Server({**environ, "METRICS_PORT": str(free_port())}, shm=shm).start()
    try:
        (left,) = shm.glob("prometheus-*")
        os.killpg(first.process.pid, signal.SIGKILL)
        first.wait(timeout=10)
        time.sleep(0.5)  # the worker dies with the group
        assert left.is_dir()
    finally:
        first.stop()
    with Server({**environ, "METRICS_PORT": str(free_port())}, shm=shm):
        assert not left.exists()
        assert len(list(shm.glob("prometheus-*"))) == 1  # the new server's own


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
            sock.sendall(b"GET /_test/hello HTTP/1.1\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /_test/hello HTTP/1.1\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 431 ")
        text = scrape(server, port)
    assert sample(text, "http_connections_dropped_total", reason="head_timeout") == 1
    assert sample(text, "http_connections_dropped_total", reason="head_too_large") == 1


def test_metrics_with_the_documented_command() -> None:
    """No DJANGO_SETTINGS_MODULE (the ASGI module names it): the project's settings are
    imported, and the environment checked again, after the directory is made."""
    port = free_port()
    server = Server({"METRICS_PORT": str(port), "HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"})
    server.environ.pop("DJANGO_SETTINGS_MODULE")
    with server:
        assert server.get("/_test/hello").status_code == 200
        assert "http_requests_total" in scrape(server, port)


def test_exceptions_are_counted_by_class_and_route() -> None:
    port = free_port()
    with Server({"METRICS_PORT": str(port), "HEALTH_CHECKS": ""}) as server:
        assert server.get("/_test/raise").status_code == 500
        assert server.get("/_test/raise/first").status_code == 500
        assert server.get("/_test/raise/second").status_code == 500
        assert server.get("/_test/hello").status_code == 200
        assert server.get("/no/such/page").status_code == 404  # not an exception raised
        text = scrape(server, port)
    count = "http_request_exceptions_total"
    assert sample(text, count, exception="RuntimeError", route="/_test/raise") == 1
    assert sample(text, count, exception="KeyError", route="/_test/raise/<str:key>") == 2
    assert total(text, count) == 3


def test_worker_exits_are_counted_by_cause() -> None:
    """Each cause the master can tell: its own request limit, a stop the master asked
    for (SIGHUP), an event loop blocked past GUNICORN_TIMEOUT, and a worker killed
    from outside (as the OOM killer does)."""
    import os
    import re
    import signal

    port = free_port()
    environ = {
        "GUNICORN_WORKERS": "2",
        "METRICS_PORT": str(port),
        "HEALTH_CHECKS": "",
        "GUNICORN_MAX_REQUESTS": "30",
        "GUNICORN_TIMEOUT": "2",
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
    }

    def replaced(gone: set[int]) -> set[int]:
        """Wait until two workers serve, none of them in ``gone``."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = set(server.workers())
            if len(now) == 2 and not now & gone:
                time.sleep(0.5)  # the new ones have started serving
                return now
            time.sleep(0.1)
        raise AssertionError(f"workers not replaced: {server.workers()}\n{server.log()}")

    with Server(environ) as server:
        first = set(server.wait_for_workers(2))
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(headers=HTTPS, limits=no_keepalive) as client:
            for _ in range(150):
                client.get(server.url("/_test/pid"))
        time.sleep(2)  # the last recycled ones are gone
        recycled = replaced(first)
        server.signal(signal.SIGHUP)
        reloaded = replaced(recycled)
        with pytest.raises(httpx.HTTPError):  # the worker is killed under the request
            server.get("/_test/block-loop?s=20", timeout=15)
        (blocked,) = {int(pid) for pid in re.findall(r"WORKER TIMEOUT \(pid:(\d+)\)", server.log())}
        killed = min(replaced({blocked}) - {blocked})
        os.kill(killed, signal.SIGKILL)
        replaced({killed})
        text = scrape(server, port)
        log = server.log()
    assert blocked in reloaded
    restarts = "gunicorn_worker_restarts_total"
    assert sample(text, restarts, cause="max_requests") >= 2, log
    assert sample(text, restarts, cause="stopped") == 2, log
    assert sample(text, restarts, cause="timeout") == 1, log
    assert sample(text, restarts, cause="crash") == 1, log
    assert sample(text, restarts, cause="memory") == 0
