"""What one WebSocket client may take of a worker, through the real ``gunicorn`` and
worker, with clients no library would be (tests/support/raw_websocket.py): compressed
bursts, a ping flood from a client that never reads, a client that stops reading.

The worker's peak memory is read from the kernel (``VmHWM`` of this server's own
worker, started again from its memory before each attack) and held to the bound
docs/serving.md gives per socket (``socket_memory_bound`` plus the message the
application itself handles). Every attack is bounded in bytes and time, on loopback.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from contextlib import ExitStack

import httpx
import pytest

from django_k8s_runtime.server.websocket_protocol import socket_memory_bound
from tests.support import raw_websocket as raw
from tests.support.server import Server, reset_peak_memory, resident_mib

pytestmark = pytest.mark.slow
MIB = 1024 * 1024
MAX_MESSAGE = MIB  # WEBSOCKET_MAX_MESSAGE_SIZE's default
# What the allocator and the interpreter may add to a worker's peak, sockets aside.
SLACK_MIB = 24


def per_socket_mib() -> float:
    """The documented bound, plus the message the application is handling."""
    return (socket_memory_bound(MAX_MESSAGE) + MAX_MESSAGE) / MIB


def access_lines(log: str, path: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if '"method": "WEBSOCKET"' in line and f'"path": "{path}"' in line
    ]


def warm_up(server: Server, path: str) -> None:
    """One socket and one compressed message first: what the first socket of a worker
    costs (imports, zlib's tables) is not what each one does."""
    with raw.connect(server.port, path, deflate=True) as socket_:
        assert socket_.status == 101
        socket_.send(raw.compressed_message(b"\0" * MAX_MESSAGE))
        socket_.send(raw.close_frame(1000))
        socket_.read_to_end(timeout=10)  # the echo, then the server's close: its slot is free


def test_compressed_bursts_cost_at_most_the_documented_bound_per_socket() -> None:
    """Each socket sends 40 messages of a mebibyte of zeros, 1 KB each on the wire, and
    reads nothing; half go to the echo, half to a consumer that takes a minute over each
    message. Uvicorn queued every message of a read: 8 such sockets took a worker past a
    gigabyte in a second."""
    environ = {"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}
    burst = raw.compressed_message(b"\0" * MAX_MESSAGE) * 40
    paths = ["/ws/_test/echo/"] * 4 + ["/ws/_test/slow-reader/"] * 4
    with Server(environ) as server, ExitStack() as stack:
        [worker] = server.wait_for_workers(1)
        warm_up(server, "/ws/_test/echo/")
        warm_up(server, "/ws/_test/slow-reader/")
        before = resident_mib(worker)
        reset_peak_memory(worker)
        sockets = [
            stack.enter_context(raw.connect(server.port, path, deflate=True, receive_buffer=4096))
            for path in paths
        ]
        assert {s.status for s in sockets} == {101}
        for socket_ in sockets:
            socket_.try_send(burst, 2)
        time.sleep(3)  # the echoes answered, the slow consumer holds its first message
        peak = resident_mib(worker, "VmHWM")
        assert httpx.get(server.url("/health/live"), timeout=5).status_code == 200
    bound = len(sockets) * per_socket_mib() + SLACK_MIB
    print(
        f"\n{len(sockets)} sockets of compressed bursts: peak {peak - before:.1f} MiB over "
        f"the worker's {before:.0f} (bound {bound:.1f})"
    )
    assert peak - before <= bound


def test_a_ping_flood_from_clients_that_never_read() -> None:
    """Two clients send pings as fast as the kernel takes them (at most 64 MB each) and
    read nothing. Uvicorn wrote every pong into its buffer: 420 MB in 18 s, and the
    liveness probe took up to 1.5 s. Here reading stops when the client stops taking,
    the probe answers at once, and each is dropped after RESPONSE_SEND_TIMEOUT."""
    send_timeout = 3
    environ = {
        "GUNICORN_WORKERS": "1",
        "HEALTH_CHECKS": "",
        "RESPONSE_SEND_TIMEOUT": str(send_timeout),
        "WEBSOCKET_MAX_CONNECTIONS": "2",
    }
    pings = raw.frame(raw.PING, b"p" * 125) * 2000  # 262 KB a send
    limit = 64 * MIB
    with Server(environ) as server:
        [worker] = server.wait_for_workers(1)
        warm_up(server, "/ws/_test/echo/")
        before = resident_mib(worker)
        reset_peak_memory(worker)
        stop = threading.Event()
        sent = [0, 0]
        reset_after: list[float] = []

        def flood(index: int) -> None:
            started = time.monotonic()
            # The warm-up's slot comes back once its application has returned.
            with raw.connect_when_free(
                server.port, "/ws/_test/echo/", receive_buffer=4096
            ) as socket_:
                assert socket_.status == 101
                try:
                    while not stop.is_set() and sent[index] < limit:
                        sent[index] += socket_.try_send(pings, 0.2)
                except OSError:  # reset by the server
                    reset_after.append(time.monotonic() - started)

        flooders = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(2)]
        for thread in flooders:
            thread.start()
        slowest = 0.0
        watching = time.monotonic()
        while time.monotonic() - watching < send_timeout + 4:
            asked = time.monotonic()
            assert httpx.get(server.url("/health/live"), timeout=5).status_code == 200
            slowest = max(slowest, time.monotonic() - asked)
            time.sleep(0.05)
        stop.set()
        for thread in flooders:
            thread.join(timeout=10)
        peak = resident_mib(worker, "VmHWM")
        with raw.connect_when_free(server.port, "/ws/_test/echo/") as again:  # both slots come back
            assert again.status == 101
        log = server.log()
    bound = 2 * per_socket_mib() + SLACK_MIB
    print(
        f"\nping flood: {sum(sent) / MIB:.1f} MiB of pings taken, peak {peak - before:.1f} MiB "
        f"(bound {bound:.1f}), slowest /health/live {slowest * 1000:.0f} ms, "
        f"reset after {[f'{s:.1f}' for s in reset_after]} s"
    )
    assert slowest < 0.5
    assert peak - before <= bound
    assert len(reset_after) == 2, "both flooders are dropped"
    assert all(seconds < send_timeout + 3 for seconds in reset_after)
    assert log.count(f"WebSocket client took nothing for {send_timeout}s, disconnected") == 2
    assert "Traceback" not in log


def _stop_reading(port: int, path: str) -> raw.RawSocket:
    """A socket whose client sends 64 KiB messages until the kernel takes no more, and
    reads nothing: the echo's answers fill every buffer, and its consumer waits in
    ``send()``."""
    socket_ = raw.connect(port, path, receive_buffer=4096)
    assert socket_.status == 101
    socket_.try_send(raw.frame(raw.BINARY, b"x" * 65536) * 256, 0.5)
    return socket_


def test_a_client_that_stops_reading_is_dropped_and_gives_its_slot_back() -> None:
    """Uvicorn kept such a socket for ever: its slot under WEBSOCKET_MAX_CONNECTIONS, its
    consumer blocked, no access line (at the ping deadline it closed a transport that
    waits for a buffer that never drains)."""
    send_timeout = 2
    environ = {
        "GUNICORN_WORKERS": "1",
        "HEALTH_CHECKS": "",
        "RESPONSE_SEND_TIMEOUT": str(send_timeout),
        "WEBSOCKET_MAX_CONNECTIONS": "2",
    }
    with Server(environ) as server, ExitStack() as stack:
        stalled = [
            stack.enter_context(_stop_reading(server.port, "/ws/_test/echo/")) for _ in range(2)
        ]
        with raw.connect(server.port, "/ws/_test/echo/") as refused:
            assert refused.status == 503  # both slots held
        started = time.monotonic()
        deadline = started + send_timeout + 10
        while time.monotonic() < deadline:
            with raw.connect(server.port, "/ws/_test/echo/") as again:
                if again.status == 101:
                    break
            time.sleep(0.2)
        freed = time.monotonic() - started
        time.sleep(0.5)
        log = server.log()
    assert len(stalled) == 2
    assert freed < send_timeout + 5, f"no slot came back in {freed:.1f}s"
    assert log.count("WebSocket client took nothing for 2s, disconnected") == 2
    assert log.count("echo socket closed with code 1006") == 2  # disconnect() ran
    lines = access_lines(log, "/ws/_test/echo/")
    assert sum('"close_code": 1006' in line for line in lines) == 2
    assert "Traceback" not in log


def test_sigterm_with_sockets_that_do_not_read_exits_well_within_the_graceful_timeout() -> None:
    """Uvicorn waited the whole graceful timeout (21.2 s of 20 s, an ERROR line) for
    sockets whose clients do not read, and 2 of 3 got no disconnect() and no access line."""
    graceful = 20
    environ = {
        "GUNICORN_WORKERS": "1",
        "GUNICORN_GRACEFUL_TIMEOUT": str(graceful),
        "RESPONSE_SEND_TIMEOUT": "4",
        "HEALTH_CHECKS": "",
    }
    with Server(environ) as server, ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(_stop_reading(server.port, "/ws/_test/echo/"))
        sigterm = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=graceful + 10) == 0
        exited = time.monotonic() - sigterm
        log = server.log()
    print(f"\nSIGTERM with 3 sockets that do not read: exit after {exited:.1f}s of {graceful}")
    assert exited < graceful / 2
    assert log.count("echo socket closed with code") == 3  # every disconnect() ran
    lines = access_lines(log, "/ws/_test/echo/")
    assert len(lines) == 3
    assert all(re.search(r'"close_code": 100[16]', line) for line in lines)
    assert "ERROR" not in log
