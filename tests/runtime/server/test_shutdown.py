"""Graceful shutdown and the worker lifecycle, with real signals and real traffic."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import httpx
import pytest

from harness import wrk
from tests.support.haproxy import HAProxy
from tests.support.requirements import require_tool
from tests.support.server import Server

pytestmark = pytest.mark.slow
HTTPS = {"x-forwarded-proto": "https"}


@pytest.mark.parametrize("pid_namespace", [False, True], ids=["plain", "pid-1"])
def test_sigterm_drains_then_finishes_in_flight_requests_and_exits_0(pid_namespace) -> None:
    """Timeline: SIGTERM at 0 s; readiness 503 at once; new connections still served
    during the 2 s delay; refused after it; the 4 s request in flight completes."""
    environ = {
        "GUNICORN_SHUTDOWN_DELAY": "2",
        "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "HEALTH_CHECKS": "",
    }
    with (
        Server(environ, pid_namespace=pid_namespace) as server,
        concurrent.futures.ThreadPoolExecutor() as pool,
    ):
        if pid_namespace:
            assert "Listening at" in server.log()
            assert _pid_in_namespace(server.master_pid) == 1
        slow = pool.submit(server.get, "/_test/sleep?s=4")
        time.sleep(0.5)
        sigterm = time.monotonic()
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(server.url("/health")).status_code == 503
        assert server.get("/_test/hello").status_code == 200  # a new connection, during the delay
        time.sleep(2.5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url("/health/live"), timeout=2)  # after the delay: refused
        assert slow.result().status_code == 200
        assert server.wait(timeout=30) == 0
        elapsed = time.monotonic() - sigterm
        assert elapsed < 2 + 20, f"exit took {elapsed:.1f}s"
        print(f"\nSIGTERM -> exit 0 after {elapsed:.1f}s (delay 2 s, request 4 s)")


@pytest.mark.parametrize("pid_namespace", [False, True], ids=["plain", "pid-1"])
@pytest.mark.parametrize("during_delay", [False, True], ids=["serving", "draining"])
def test_sigint_is_quick_with_a_slow_request_in_flight(pid_namespace, during_delay) -> None:
    environ = {
        "GUNICORN_SHUTDOWN_DELAY": "10",
        "GUNICORN_GRACEFUL_TIMEOUT": "60",
        "HEALTH_CHECKS": "",
    }
    with (
        Server(environ, pid_namespace=pid_namespace) as server,
        concurrent.futures.ThreadPoolExecutor() as pool,
    ):
        slow = pool.submit(server.get, "/_test/sleep?s=50")
        time.sleep(0.5)
        if during_delay:
            server.signal(signal.SIGTERM)
            time.sleep(0.5)
        started = time.monotonic()
        server.signal(signal.SIGINT)
        server.wait(timeout=30)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"SIGINT took {elapsed:.1f}s"
        with pytest.raises(httpx.HTTPError):
            slow.result()


def test_a_second_sigterm_skips_the_rest_of_the_delay() -> None:
    with Server({"GUNICORN_SHUTDOWN_DELAY": "60", "HEALTH_CHECKS": ""}) as server:
        server.signal(signal.SIGTERM)
        time.sleep(0.5)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        assert time.monotonic() - started < 10


def test_ttin_and_ttou_change_the_worker_count() -> None:
    with Server({"GUNICORN_WORKERS": "2", "HEALTH_CHECKS": ""}) as server:
        server.wait_for_workers(2)
        server.signal(signal.SIGTTIN)
        server.wait_for_workers(3)
        # One signal at a time: the kernel merges identical pending signals.
        for expected in (2, 1):
            server.signal(signal.SIGTTOU)
            deadline = time.monotonic() + 30
            while len(server.workers()) != expected and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(server.workers()) == expected
        assert server.get("/_test/hello").status_code == 200


def test_sighup_replaces_every_worker_without_dropping_a_request() -> None:
    with Server({"GUNICORN_WORKERS": "2", "HEALTH_CHECKS": ""}) as server:
        before = set(server.wait_for_workers(2))
        statuses: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            # A new connection per request. (An idle keep-alive connection is closed
            # by a worker that shuts down; a client racing a request onto it must
            # retry, as load balancers do: see the HAProxy tests below.)
            no_keepalive = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(headers=HTTPS, limits=no_keepalive) as client:
                while not stop.is_set():
                    statuses.append(client.get(server.url("/_test/hello")).status_code)

        thread = threading.Thread(target=traffic)
        thread.start()
        time.sleep(0.5)
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = set(server.workers())
            if len(now) == 2 and not now & before:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        thread.join()
        assert not set(server.workers()) & before, "old workers still running"
        assert statuses
        assert set(statuses) == {200}, statuses


# Rolling restart behind a real load balancer --------------------------------------


def _pod(port: int, **environ: str) -> Server:
    # The shutdown delay (4 s) outlasts the balancer's detection of a draining pod
    # (two failed checks a second apart, about 2 s) with room for a loaded machine.
    return Server(
        {
            "GUNICORN_PORT": str(port),
            "GUNICORN_WORKERS": "2",
            "GUNICORN_SHUTDOWN_DELAY": "4",
            "GUNICORN_GRACEFUL_TIMEOUT": "10",
            "HEALTH_CHECKS": "",
            **environ,
        }
    )


def _load_in_background(url: str, seconds: float) -> concurrent.futures.Future[wrk.Result]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(wrk.run, url, connections=16, seconds=seconds, headers=HTTPS)
    pool.shutdown(wait=False)
    return future


@pytest.fixture
def two_pods():
    require_tool("haproxy", "wrk")
    from tests.support.server import free_port

    ports = [free_port(), free_port()]
    pods = [_pod(port) for port in ports]
    for pod in pods:
        pod.start()
    try:
        with HAProxy(ports) as balancer:
            yield balancer, pods, ports
    finally:
        for pod in pods:
            pod.stop()


def _rolling_restart(
    balancer: HAProxy, pods: list[Server], ports: list[int], **environ: str
) -> tuple[wrk.Result, int]:
    """SIGTERM pod 0, replace it on the same address, then SIGTERM pod 1, under load.

    The load outlasts the whole sequence (about 15 s here, up to about 20 s on a
    slow, loaded machine: pod 0's delay and drain, the replacement's start, two
    health checks), so the replacement is under load before pod 1 goes; its share
    is counted when pod 1 has exited."""
    load = _load_in_background(balancer.url("/_test/hello"), seconds=30)
    time.sleep(3)
    pods[0].signal(signal.SIGTERM)
    assert pods[0].wait(timeout=30) == 0
    replacement = _pod(ports[0], **environ).start()
    try:
        balancer.wait_until_up([0])  # the new pod is ready before the next one goes
        pods[1].signal(signal.SIGTERM)
        assert pods[1].wait(timeout=30) == 0
        return load.result(), replacement.log().count("GET /_test/hello")
    finally:
        replacement.stop()


def test_rolling_restart_under_load_loses_no_request(two_pods) -> None:
    result, served_by_replacement = _rolling_restart(*two_pods)
    _report("rolling restart (SIGTERM each pod in turn)", result)
    assert result.errors == 0, result.output
    assert result.requests > 1000
    assert served_by_replacement > 0  # the new pod took traffic before pod 1 left


def test_without_the_delay_the_same_restart_loses_requests(two_pods) -> None:
    """The control experiment: Gunicorn's own behaviour (close the socket at once)
    under the same restart. It shows the test above can fail, and why the delay exists."""
    balancer, pods, ports = two_pods
    for pod in pods:
        pod.stop()
    undelayed = [_pod(port, GUNICORN_SHUTDOWN_DELAY="0").start() for port in ports]
    try:
        balancer.wait_until_up([0, 1])
        result, _ = _rolling_restart(balancer, undelayed, ports, GUNICORN_SHUTDOWN_DELAY="0")
    finally:
        for pod in undelayed:
            pod.stop()
    _report("the same restart with GUNICORN_SHUTDOWN_DELAY=0", result)
    assert result.errors > 0


def test_worker_recycling_under_load_loses_no_request(two_pods) -> None:
    balancer, pods, ports = two_pods
    for pod in pods:
        pod.stop()
    recycling = [
        _pod(port, GUNICORN_MAX_REQUESTS="50", GUNICORN_MAX_REQUESTS_JITTER="10").start()
        for port in ports
    ]
    try:
        balancer.wait_until_up([0, 1])
        result = wrk.run(balancer.url("/_test/hello"), connections=16, seconds=10, headers=HTTPS)
        recycled = sum(pod.log().count("Maximum request limit") for pod in recycling)
    finally:
        for pod in recycling:
            pod.stop()
    _report(f"GUNICORN_MAX_REQUESTS=50 ({recycled} worker recycles)", result)
    assert result.errors == 0, result.output
    assert recycled >= 4  # every worker of both pods, at least once


def test_sighup_under_load_loses_no_request(two_pods) -> None:
    balancer, pods, _ = two_pods
    load = _load_in_background(balancer.url("/_test/hello"), seconds=10)
    time.sleep(2)
    pods[0].signal(signal.SIGHUP)
    time.sleep(3)
    pods[1].signal(signal.SIGHUP)
    result = load.result()
    _report("SIGHUP to each pod under load", result)
    assert result.errors == 0, result.output
    assert result.requests > 1000


def _report(scenario: str, result: wrk.Result) -> None:
    print(
        f"\n{scenario}: {result.requests} requests, {result.status_errors} non-2xx/3xx, "
        f"{result.socket_errors} socket errors, {result.rps:.0f} req/s"
    )


def _pid_in_namespace(host_pid: int) -> int:
    with open(f"/proc/{host_pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError("no NSpid")
