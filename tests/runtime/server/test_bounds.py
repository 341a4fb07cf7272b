"""What one request may hold of a worker, and for how long, with real Gunicorn and raw
sockets: a client that never reads, a head that never completes, a view whose query
outlives its timeout, more requests than the worker can serve, and connections reset
by the thousand. Each held a thread, a connection or memory for ever before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server

pytestmark = pytest.mark.slow

STATIC = "/static/admin/js/vendor/jquery/jquery.js"  # 285 KiB: longer than one hand-off


def request(path: str, *, host: str = "localhost") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n\r\n".encode()


@contextlib.contextmanager
def clients_that_never_read(port: int, payload: bytes, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send ``payload`` and then read nothing (a small
    receive window, set before connecting, so the server's writes back up soon)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(payload)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sock: socket.socket, most: int = 1 << 20, wait: float = 5) -> bool:
    """Whether the server has closed ``sock``: at most ``most`` bytes (what the small
    window let through) before the end. A server still sending would send more."""
    sock.settimeout(wait)
    received = 0
    while received <= most:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        if not data:
            return True
        received += len(data)
    return False


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def timed_get(server: Server, path: str, timeout: float = 10) -> tuple[int, float]:
    started = time.monotonic()
    response = server.get(path, timeout=timeout)
    return response.status_code, time.monotonic() - started


def access_lines(server: Server, path: str) -> list[dict]:
    import json

    found = []
    for line in server.log_lines():
        if '"logger": "django_k8s_runtime.access"' in line:
            record = json.loads(line)
            if record["path"].startswith(path):
                found.append(record)
    return found


# A client that never reads -------------------------------------------------------------


def test_clients_that_never_read_a_file_hold_no_thread_and_are_disconnected() -> None:
    environ = {
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_TIMEOUT": "60",
        "RESPONSE_SEND_TIMEOUT": "4",
    }
    with Server(environ) as server:
        # More such clients than threads, each with 32 responses pipelined.
        with clients_that_never_read(server.port, request(STATIC) * 32, 8) as stuck:
            time.sleep(1)  # their responses are under way, and backed up
            answers = [timed_get(server, "/_test/hello") for _ in range(5)]
            assert all(status == 200 for status, _ in answers), answers
            # Prompt: nowhere near the 60 s a held thread would have meant.
            assert max(seconds for _, seconds in answers) < 5, answers
            assert httpx.get(server.url("/health"), timeout=5).status_code == 200
            time.sleep(4 + 6)  # RESPONSE_SEND_TIMEOUT, and then some
            closed = [closed_by_server(sock) for sock in stuck]
        assert all(closed), closed
        log = server.log()
        assert "Client took none of the response for 4s, disconnected" in log
        assert "route=static" in log
        # The 200 went out: recorded as sent, with why it ended early.
        outcomes = {(line["status"], line.get("ended")) for line in access_lines(server, STATIC)}
        assert (200, "send_timeout") in outcomes, outcomes
        assert not {status for status, _ in outcomes} & {499, 500, 504}, outcomes


def test_a_client_that_never_reads_a_stream_gives_its_thread_back() -> None:
    """A generator is read in its request's thread (it may need that thread): the
    thread comes back when the client is disconnected, not at the request timeout."""
    environ = {
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_TIMEOUT": "60",
        "RESPONSE_SEND_TIMEOUT": "3",
    }
    stream = request("/_test/stream/sync?bytes=100000000&chunk=65536")
    with Server(environ) as server, clients_that_never_read(server.port, stream, 2) as stuck:
        time.sleep(1)
        status, seconds = timed_get(server, "/_test/hello", timeout=45)
        assert status == 200
        assert seconds < 20, f"answered after {seconds:.1f}s: the threads were held"
        time.sleep(3)
        assert all(closed_by_server(sock) for sock in stuck)


# A head that never completes -------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_heads():
    with Server({"GUNICORN_WORKERS": "1", "REQUEST_HEAD_TIMEOUT": "2"}) as running:
        yield running


def test_a_partial_head_is_answered_408_within_its_deadline(quick_heads: Server) -> None:
    with socket.create_connection(("127.0.0.1", quick_heads.port)) as sock:
        sock.sendall(b"GET /_test/hello HTTP/1.1\r\n")
        started = time.monotonic()
        sock.settimeout(15)
        answer = sock.recv(4096)
        waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert sock.recv(4096) == b""  # and closed
    assert 1 <= waited < 10, waited


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(quick_heads: Server) -> None:
    with socket.create_connection(("127.0.0.1", quick_heads.port)) as sock:
        sock.settimeout(15)
        assert sock.recv(4096) == b""


def test_the_next_head_on_a_kept_alive_connection_has_its_own_deadline(
    quick_heads: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", quick_heads.port)) as sock:
        sock.settimeout(15)
        sock.sendall(request("/_test/hello"))
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(3)  # idle longer than the head's deadline: keep-alive's business
        sock.sendall(b"GET /_test/hel")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")


# A view whose query outlives its timeout -------------------------------------------------


def running_queries(postgres, application_name: str) -> list[tuple[str, str]]:
    return postgres.execute(
        "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    )


def wait_for(condition, seconds: float) -> float | None:
    """Seconds until ``condition()`` held, or None if it never did within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


@pytest.mark.postgres
def test_a_timed_out_views_query_is_cancelled_and_the_pool_is_whole_again(postgres) -> None:
    name = f"bounds-{uuid.uuid4().hex[:8]}"
    environ = {
        "DATABASE_URL": postgres.url(application_name=name),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "1",
        "GUNICORN_TIMEOUT": "3",
        "DB_POOL_MIN_SIZE": "0",
        "DB_POOL_MAX_SIZE": "1",
    }
    with Server(environ) as server:
        status, _ = timed_get(server, "/_test/db-sleep?s=120", timeout=30)
        answered = time.monotonic()
        assert status == 504

        def sleeping() -> bool:
            return any("pg_sleep" in query for _, query in running_queries(postgres, name))

        gone_after = wait_for(lambda: not sleeping(), 15)
        assert gone_after is not None, running_queries(postgres, name)
        assert time.monotonic() - answered - 0 < 2 + 1, "cancelled, but late"
        # The one thread and the one pooled connection serve again at once.
        status, seconds = timed_get(server, "/_test/db-ping")
        assert status == 200
        assert seconds < 5
        assert "cancelled the query of a request past its deadline" in server.log()


@pytest.mark.postgres
def test_a_transaction_left_idle_is_ended_by_the_server(postgres) -> None:
    name = f"bounds-{uuid.uuid4().hex[:8]}"
    environ = {
        "DATABASE_URL": postgres.url(application_name=name),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_TIMEOUT": "2",
    }
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(timed_get, server, "/_test/idle-in-transaction?s=15", 30)

        def idle_in_transaction() -> bool:
            return any(
                state == "idle in transaction" for state, _ in running_queries(postgres, name)
            )

        assert wait_for(idle_in_transaction, 10) is not None
        ended = wait_for(lambda: not idle_in_transaction(), 10)
        assert ended is not None, "PostgreSQL did not end the idle transaction"
        assert pending.result()[0] == 504


@pytest.mark.postgres
def test_management_commands_are_not_bounded_by_the_request_timeout(postgres) -> None:
    from tests.support.server import run

    result = run(
        [
            "python",
            "-m",
            "tests.site.manage",
            "shell",
            "-c",
            "from django.db import connection; connection.cursor().execute('SELECT pg_sleep(3)')",
        ],
        {"DATABASE_URL": postgres.url(), "GUNICORN_TIMEOUT": "1"},
    )
    assert result.returncode == 0, result.stderr


# More requests than the worker can serve -------------------------------------------------


def test_overload_is_refused_at_once_with_retry_after_and_probes_stay_ready() -> None:
    """Capacity: 2 threads × 0.2 s = 10 requests a second. Offered: 60 clients at once,
    about six times as many. Without admission they queue past the 4 s timeout."""
    environ = {
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_TIMEOUT": "4",
        "METRICS_PORT": "0",
    }
    results: list[tuple[int, float, str | None]] = []
    probes: list[int] = []
    stop = threading.Event()

    def client(http: httpx.Client) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = http.get("/_test/sleep?s=0.2")
            except httpx.HTTPError:
                results.append((0, time.monotonic() - started, None))
                continue
            elapsed = time.monotonic() - started
            results.append((response.status_code, elapsed, response.headers.get("retry-after")))

    def prober() -> None:
        while not stop.is_set():
            for path in ("/health", "/health/live"):
                probes.append(httpx.get(server.url(path), timeout=5).status_code)
            time.sleep(0.2)

    with Server(environ) as server:
        base = server.url("")
        headers = {"x-forwarded-proto": "https"}
        with concurrent.futures.ThreadPoolExecutor(61) as pool:
            sessions = [httpx.Client(base_url=base, headers=headers, timeout=30) for _ in range(60)]
            futures = [pool.submit(client, http) for http in sessions]
            futures.append(pool.submit(prober))
            time.sleep(8)
            stop.set()
            for future in futures:
                future.result(timeout=60)
            for http in sessions:
                http.close()

    refused = [r for r in results if r[0] == 503]
    admitted = [r for r in results if r[0] == 200]
    others = sorted({r[0] for r in results} - {200, 503})
    assert refused, "nothing was refused"
    assert admitted, "nothing was admitted"
    assert others == [], f"statuses other than 200 and 503: {others}"
    assert all(retry == "1" for _, _, retry in refused)
    # Refused at once, not after waiting: far below the 4 s timeout.
    assert sorted(seconds for _, seconds, _ in refused)[len(refused) // 2] < 0.5
    assert max(seconds for _, seconds, _ in admitted) < 4
    assert probes, "the probes were never asked"
    assert set(probes) == {200}, sorted(set(probes))


# Connections reset by the client -----------------------------------------------------------


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
    return int(kib) / 1024


def reset_after_a_response(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_thousands_of_reset_connections_leave_the_workers_memory_flat() -> None:
    with Server({"GUNICORN_WORKERS": "1", "METRICS_PORT": "0"}) as server:
        (worker,) = server.workers()
        payload = request("/_test/hello")
        for _ in range(300):  # warm up: caches, allocator arenas
            reset_after_a_response(server.port, payload)
        before = rss_mib(worker)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: reset_after_a_response(server.port, payload), range(4000)))
        grown = rss_mib(worker) - before
    # Held until the 75 s keep-alive timer fired, 4000 of them took tens of MiB.
    assert grown < 8, f"the worker grew by {grown:.1f} MiB"


# Gunicorn's worker_connections: requests in flight and connections --------------------------


def test_requests_in_flight_past_worker_connections_are_refused_but_not_the_probes() -> None:
    environ = {"GUNICORN_WORKERS": "1", "GUNICORN_WORKER_CONNECTIONS": "4", "METRICS_PORT": "0"}
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(10) as pool:
        # Async views hold no thread: only the cap stops them piling up.
        slow = [pool.submit(timed_get, server, "/_test/async-sleep?s=3", 30) for _ in range(4)]
        time.sleep(1)
        status, seconds = timed_get(server, "/_test/async-sleep?s=0")
        assert status == 503
        assert seconds < 1
        assert httpx.get(server.url("/health/live"), timeout=5).status_code == 200
        assert httpx.get(server.url("/health"), timeout=5).status_code == 200
        assert [future.result()[0] for future in slow] == [200] * 4
        assert timed_get(server, "/_test/async-sleep?s=0")[0] == 200


def test_idle_connections_past_worker_connections_are_closed_to_make_room() -> None:
    environ = {"GUNICORN_WORKERS": "1", "GUNICORN_WORKER_CONNECTIONS": "5", "METRICS_PORT": "0"}
    with Server(environ) as server:
        idle = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(request("/_test/hello"))
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            idle.append(sock)
        newcomer = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        newcomer.sendall(request("/_test/hello"))
        assert read_response(newcomer).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.5)
        closed = sum(closed_by_server(sock, wait=0.5) for sock in idle)
        for sock in [*idle, newcomer]:
            sock.close()
    assert closed >= 1


# What one connection may hold: pipelined requests, and a body that trickles -----------------


def peak_memory_mib(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_client_that_pipelines_without_reading_holds_a_bounded_share() -> None:
    """Four clients send pipelined requests as fast as they can for eight seconds and
    read nothing: the worker parses at most PIPELINE_DEPTH behind each one running,
    stops reading, and keeps its memory (it took 600 MB and more before); the probe
    and other clients are answered meanwhile."""
    with Server({"GUNICORN_WORKERS": "1", "RESPONSE_SEND_TIMEOUT": "60"}) as server:
        (worker,) = server.workers()
        assert server.get("/_test/hello").status_code == 200
        before = peak_memory_mib(worker)
        stop = time.monotonic() + 8
        sent = [0]

        def pipeline() -> None:
            burst = request("/_test/hello") * 512
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(0.5)
                while time.monotonic() < stop:
                    try:
                        sock.sendall(burst)
                        sent[0] += len(burst)
                    except (TimeoutError, OSError):
                        time.sleep(0.05)  # the server stopped reading: as it should

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(pipeline) for _ in range(4)]
            time.sleep(4)
            answers = [timed_get(server, "/_test/hello") for _ in range(3)]
            live = httpx.get(server.url("/health/live"), timeout=2)
            for client in clients:
                client.result()
        grown = peak_memory_mib(worker) - before
    assert all(status == 200 and seconds < 2 for status, seconds in answers), answers
    assert live.status_code == 200
    assert grown < 64, f"the worker grew {grown:.0f} MiB (the clients sent {sent[0]} bytes)"


def test_slow_request_bodies_hold_no_slot_and_are_the_clients_408() -> None:
    """1,100 POSTs whose 100-byte bodies come a byte a second (more than
    GUNICORN_WORKER_CONNECTIONS): everyone else is answered 200 meanwhile, and each
    slow body is answered 408 once its grace has passed (the client's, never a 5xx)."""
    environ = {
        "GUNICORN_WORKERS": "1",
        "REQUEST_BODY_GRACE": "3",
        "GUNICORN_WORKER_CONNECTIONS": "1000",
    }
    head = (
        b"POST /_test/echo HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )
    with Server(environ) as server:
        slow = []
        try:
            for _ in range(1100):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(head + b"a")
                slow.append(sock)
            answers = []
            for _ in range(3):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")
                answers.append(timed_get(server, "/_test/hello"))
                time.sleep(1)
            refused = 0
            for sock in slow:
                sock.settimeout(10)
                with contextlib.suppress(OSError):
                    refused += sock.recv(4096).startswith(b"HTTP/1.1 408 ")
        finally:
            for sock in slow:
                sock.close()
        time.sleep(1.5)  # access lines are written together
        statuses = [line["status"] for line in access_lines(server, "/_test/echo")]
        log = server.log()
    assert all(status == 200 for status, _ in answers), answers
    assert refused == 1100
    assert statuses.count(408) == 1100, sorted(set(statuses))
    assert not [status for status in statuses if status >= 500]
    assert "Request body too slow, answered 408" in log
