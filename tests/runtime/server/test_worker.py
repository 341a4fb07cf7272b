"""The Uvicorn worker under real Gunicorn: timeouts, recycling and signals."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server

pytestmark = pytest.mark.slow


def test_a_request_longer_than_the_timeout_is_answered_504() -> None:
    with Server({"GUNICORN_TIMEOUT": "2", "GUNICORN_WORKERS": "1"}) as server:
        for path in ("/_test/sleep?s=6", "/_test/async-sleep?s=6"):
            started = time.monotonic()
            response = server.get(path)
            elapsed = time.monotonic() - started
            assert response.status_code == 504, path
            assert 1.8 < elapsed < 5, f"{path} answered after {elapsed:.1f}s"
        assert server.log().count("exceeded the 2s timeout, answered 504") == 2
        # The worker survived: the timeout bounds requests, not the process.
        assert server.get("/_test/hello").status_code == 200
        assert "WORKER TIMEOUT" not in server.log()


@pytest.mark.parametrize("preload", ["true", "false"])
def test_what_a_worker_loaded_before_serving_is_out_of_the_collectors_sight(preload) -> None:
    # Full collections would scan Django and the project at every turn (server/worker.py).
    with Server({"GUNICORN_WORKERS": "1", "GUNICORN_PRELOAD": preload}) as server:
        counts = server.get("/_test/frozen").json()
    assert counts["frozen"] > 20_000, counts  # Django alone is tens of thousands
    assert counts["frozen"] > counts["tracked"], counts  # most of the process


def test_a_blocked_event_loop_gets_its_worker_replaced() -> None:
    with Server({"GUNICORN_TIMEOUT": "2", "GUNICORN_WORKERS": "1"}) as server:
        (victim,) = server.wait_for_workers(1)
        with pytest.raises(httpx.HTTPError):
            server.get("/_test/block-loop?s=30", timeout=20)
        assert "WORKER TIMEOUT" in server.log()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            workers = server.workers()
            if workers and victim not in workers:
                break
            time.sleep(0.1)
        assert victim not in server.workers()
        server.wait_until_live()
        assert server.get("/_test/hello").status_code == 200


def test_max_requests_recycles_workers_without_a_failed_request() -> None:
    environ = {"GUNICORN_WORKERS": "1", "GUNICORN_MAX_REQUESTS": "10"}
    with Server(environ) as server:
        pids = set()
        statuses = []
        # A new connection per request, like a load balancer without keep-alive.
        for _ in range(45):
            response = server.get("/_test/pid", headers={"connection": "close"})
            statuses.append(response.status_code)
            pids.add(response.json()["pid"])
        assert statuses == [200] * 45
        assert len(pids) >= 4, f"only {len(pids)} worker pid(s) seen: {pids}"
        assert "Maximum request limit" in server.log()


def test_recycling_waits_for_a_request_still_running() -> None:
    """A request in flight when its worker starts draining (max-requests) finishes.

    Upstream, Uvicorn notifies Gunicorn's heartbeat only from its main loop, which
    ends when draining begins; Gunicorn then kills the worker ``timeout`` seconds
    after the last notification, mid-request. The scene is set so that happens:
    the worker's first notification is at its start (t0), the next one would be
    about 5 s later (half the timeout); draining begins at t0+4 s with a 9 s
    request in flight, which needs until t0+13 s, past t0+10 s.
    """
    environ = {"GUNICORN_WORKERS": "1", "GUNICORN_MAX_REQUESTS": "2", "GUNICORN_TIMEOUT": "10"}
    with Server(environ) as server:
        (first,) = server.wait_for_workers(1)
        while first in server.workers():  # use up the first worker's requests
            server.get("/health/live")
            time.sleep(0.05)
        (fresh,) = server.wait_for_workers(1)
        started = next(
            datetime.fromisoformat(line["timestamp"]).timestamp()
            for line in map(json.loads, server.log_lines())
            if line["message"] == f"Started server process [{fresh}]"
        )
        time.sleep(max(0.0, started + 4.0 - time.time()))
        with concurrent.futures.ThreadPoolExecutor() as pool:
            slow = pool.submit(server.get, "/_test/sleep?s=9")
            time.sleep(0.2)
            assert server.get("/_test/pid").json()["pid"] == fresh  # the limit: draining
            assert slow.result().status_code == 200
        assert "WORKER TIMEOUT" not in server.log()


def test_sigterm_stops_gracefully_and_exits_0() -> None:
    with Server() as server:
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_quick_shutdown_is_quick_even_with_a_request_in_flight(sig: int) -> None:
    with (
        Server({"GUNICORN_GRACEFUL_TIMEOUT": "60"}) as server,
        concurrent.futures.ThreadPoolExecutor() as pool,
    ):
        slow = pool.submit(server.get, "/_test/sleep?s=50")
        time.sleep(1)
        started = time.monotonic()
        server.signal(sig)
        server.wait(timeout=20)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"quick shutdown took {elapsed:.1f}s"
        with pytest.raises(httpx.HTTPError):
            slow.result()


def test_an_application_that_cannot_load_in_a_worker_stops_the_server_once() -> None:
    """Without preloading, a project's configuration error used to make each worker
    exit 1, and Gunicorn booted replacements twice a second for ever (then exited 0
    on SIGTERM). Now the worker exits with Gunicorn's boot-error code."""
    server = Server({"GUNICORN_PRELOAD": "false", "DJANGO_DEBUG": "maybe"})
    server.environ.pop("DJANGO_SETTINGS_MODULE")  # the master cannot see the project's variables
    server.start(wait=False)
    try:
        assert server.wait(timeout=60) == 3  # Gunicorn's Arbiter.WORKER_BOOT_ERROR
    finally:
        server.stop()
    log = server.log()
    assert "Reason: Worker failed to boot." in log
    assert log.count("Booting worker") <= 2, log  # the two first workers, no replacement
    error = "configuration error: DJANGO_DEBUG='maybe' is not valid"
    assert 1 <= log.count(error) <= 2, log
    assert "Traceback" not in log


def test_workers_stop_when_their_master_is_killed(tmp_path) -> None:
    """Upstream, workers of a master killed with SIGKILL kept serving and held the
    port (a restart outside a container could not bind); the last one out removes
    the metrics directory."""
    import os
    import socket

    from tests.support.server import free_port

    shm = tmp_path / "shm"
    environ = {"GUNICORN_WORKERS": "2", "METRICS_PORT": str(free_port()), "HEALTH_CHECKS": ""}
    with Server(environ, shm=shm) as server:
        workers = server.wait_for_workers(2)
        assert len(list(shm.glob("prometheus-*"))) == 1
        os.kill(server.master_pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(map(_running, workers)):
            time.sleep(0.1)
        assert not any(map(_running, workers)), server.log()
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", server.port), timeout=5),
        ):
            pass
        assert server.log().count("is gone: worker stopping") == 2
        assert list(shm.glob("prometheus-*")) == []


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
