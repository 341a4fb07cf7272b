"""WebSockets through the real ``gunicorn`` and worker, with real signals and the real
``websockets`` client: open sockets beside HTTP, every way a worker stops, the
handshake's checks and the limits.

test_websocket_protocol.py shows, in one process, each of Uvicorn's
behaviours that the worker changes. The test site's consumers (tests/site/consumers.py)
stand in for a project's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import socket
import threading
import time
from contextlib import ExitStack

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.processes import free_port
from tests.support.haproxy import HAProxy
from tests.support.metrics import sample, scrape_published
from tests.support.requirements import require_tool
from tests.support.server import Server
from tests.support.sockets import Closed, open_socket, wait_closed

pytestmark = pytest.mark.slow
HTTPS = {"x-forwarded-proto": "https"}


def echoes(socket_, text: str = "ping") -> bool:
    socket_.send(text)
    return socket_.recv(timeout=10) == text


def closes_of(sockets, timeout: float) -> list[Closed]:
    with concurrent.futures.ThreadPoolExecutor(len(sockets)) as pool:
        return list(pool.map(lambda s: wait_closed(s, timeout), sockets))


def test_twenty_open_sockets_and_http_beside_them() -> None:
    with Server({"GUNICORN_WORKERS": "2", "HEALTH_CHECKS": ""}) as server, ExitStack() as stack:
        sockets = [
            stack.enter_context(open_socket(server.url("/ws/_test/echo/"))) for _ in range(20)
        ]
        assert server.get("/_test/hello").status_code == 200
        assert httpx.get(server.url("/health"), timeout=10).status_code == 200
        assert all(echoes(s, f"message {n}") for n, s in enumerate(sockets))
        assert server.get("/_test/hello").status_code == 200


def test_sigterm_closes_every_socket_with_1001_after_the_delay_and_exits_0() -> None:
    """Timeline: SIGTERM at 0 s; readiness 503 at once while the sockets keep
    working through the 2 s delay; then each gets 1001, its consumer's disconnect
    runs, and the server exits 0 well inside the graceful timeout."""
    delay, graceful = 2, 20
    environ = {
        "GUNICORN_WORKERS": "2",
        "GUNICORN_SHUTDOWN_DELAY": str(delay),
        "GUNICORN_GRACEFUL_TIMEOUT": str(graceful),
        "HEALTH_CHECKS": "",
    }
    with Server(environ) as server, ExitStack() as stack:
        server.wait_for_workers(2)
        sockets = [
            stack.enter_context(open_socket(server.url("/ws/_test/echo/"))) for _ in range(20)
        ]
        assert all(echoes(s) for s in sockets)
        sigterm = time.monotonic()
        server.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert httpx.get(server.url("/health"), timeout=10).status_code == 503
        assert all(echoes(s, "during the delay") for s in sockets)
        closed = closes_of(sockets, timeout=delay + graceful + 10)
        assert server.wait(timeout=graceful + 10) == 0
        exited = time.monotonic() - sigterm
    assert {c.code for c in closed} == {1001}
    assert all(c.clean for c in closed)
    after = sorted(c.at - sigterm for c in closed)
    assert after[0] >= delay - 0.1, after  # not before the delay is over
    assert after[-1] < delay + graceful, after
    assert exited < delay + graceful
    assert server.log().count("echo socket closed with code 1001") == 20  # disconnect() ran
    print(f"\n20 sockets closed 1001 at {after[0]:.2f}-{after[-1]:.2f}s; exit 0 at {exited:.1f}s")


def test_sigint_closes_the_sockets_at_once() -> None:
    environ = {"GUNICORN_SHUTDOWN_DELAY": "10", "GUNICORN_GRACEFUL_TIMEOUT": "60"}
    with Server({**environ, "HEALTH_CHECKS": ""}) as server, ExitStack() as stack:
        sockets = [
            stack.enter_context(open_socket(server.url("/ws/_test/echo/"))) for _ in range(4)
        ]
        started = time.monotonic()
        server.signal(signal.SIGINT)
        closed = closes_of(sockets, timeout=10)
        server.wait(timeout=30)
    assert {c.code for c in closed} == {1001}
    assert max(c.at for c in closed) - started < 5


@pytest.mark.parametrize("how", ["sighup", "max-requests"])
def test_a_replaced_worker_closes_its_sockets_with_1001(how: str) -> None:
    """A worker recycled (GUNICORN_MAX_REQUESTS) or reloaded (SIGHUP) says going
    away to its sockets, never drops them; the client reconnects to its successor."""
    environ = {"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}
    if how == "max-requests":
        environ["GUNICORN_MAX_REQUESTS"] = "5"
    with Server(environ) as server:
        with open_socket(server.url("/ws/_test/pid/")) as old:
            old_pid = int(old.recv(timeout=10))
            if how == "sighup":
                server.signal(signal.SIGHUP)
                closed = wait_closed(old, timeout=30)
            else:
                # Sockets do not count as requests; these do, one at a time until the
                # worker goes (so its successor is not at its own limit already).
                closed = None
                for _ in range(10):
                    server.get("/_test/hello")
                    with contextlib.suppress(AssertionError):
                        closed = wait_closed(old, timeout=1)
                        break
                assert closed is not None, "the worker was not recycled"
        with open_socket(server.url("/ws/_test/pid/")) as new:
            new_pid = int(new.recv(timeout=10))
            assert echoes(new)
    assert closed.code == 1001
    assert closed.clean
    assert new_pid != old_pid


def test_an_idle_socket_outlives_the_request_timeout() -> None:
    with Server({"GUNICORN_TIMEOUT": "2", "HEALTH_CHECKS": ""}) as server:
        with open_socket(server.url("/ws/_test/echo/")) as idle:
            time.sleep(5)  # two and a half timeouts
            assert echoes(idle)
        assert "timed out" not in server.log().lower()


def test_a_handshake_is_bounded_by_the_request_timeout() -> None:
    with Server({"GUNICORN_TIMEOUT": "2", "HEALTH_CHECKS": ""}) as server:
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            open_socket(server.url("/ws/_test/slow-to-accept/"), open_timeout=30)
        waited = time.monotonic() - started
    assert refused.value.response.status_code == 504
    assert 2 <= waited < 10
    assert "handshake exceeded the 2s timeout" in server.log()


def test_the_handshakes_checks_and_the_limits() -> None:
    environ = {
        "GUNICORN_WORKERS": "1",
        "WEBSOCKET_MAX_CONNECTIONS": "3",
        "WEBSOCKET_MAX_MESSAGE_SIZE": "1024",
        "HEALTH_CHECKS": "",
    }
    with Server(environ) as server, ExitStack() as stack:
        url = server.url("/ws/_test/echo/")

        def refused(**options) -> int:
            with pytest.raises(InvalidStatus) as error:
                open_socket(url, **options)
            return error.value.response.status_code

        assert refused(origin="https://evil.example") == 403  # Channels' origin check
        assert refused(origin=None) == 403  # no Origin: not a browser on an allowed site
        assert refused(additional_headers={"Host": "evil.example"}) == 400  # two Hosts
        assert _raw_handshake(server.port, host=b"evil.example").startswith(b"HTTP/1.1 400")
        too_long = b"x" * 9000  # GUNICORN_LIMIT_REQUEST_FIELD_SIZE is 8190
        assert _raw_handshake(server.port, extra=b"X-Big: " + too_long).startswith(b"HTTP/1.1 431")
        # A body, which websockets refuses: answered (Uvicorn 0.54 held it unanswered).
        assert _raw_handshake(server.port, extra=b"Content-Length: 5").startswith(b"HTTP/1.1 400")

        sockets = [stack.enter_context(open_socket(url)) for _ in range(3)]
        assert refused() == 503  # the cap, per worker
        sockets[0].close()
        time.sleep(0.5)
        sockets[0] = stack.enter_context(open_socket(url))  # room again
        assert refused() == 503

        big = sockets[1]
        assert echoes(big, "x" * 1000)
        big.send("x" * 1025)
        with pytest.raises(ConnectionClosed) as too_big:
            big.recv(timeout=10)
        assert too_big.value.rcvd is not None
        assert too_big.value.rcvd.code == 1009
        log = server.log()
    assert "WEBSOCKET_MAX_CONNECTIONS=3" in log
    assert "not in ALLOWED_HOSTS" in log
    assert "WebSocket handshake refused: " in log


def test_any_origin_when_allowed_explicitly() -> None:
    """WEBSOCKET_ALLOWED_ORIGINS=*: clients that are not browsers send no Origin."""
    environ = {"WEBSOCKET_ALLOWED_ORIGINS": "*", "HEALTH_CHECKS": ""}
    with Server(environ) as server, open_socket(server.url("/ws/_test/echo/"), origin=None) as s:
        assert echoes(s)


def test_each_socket_has_an_access_line_and_metrics() -> None:
    metrics_port = free_port()
    environ = {"GUNICORN_WORKERS": "2", "METRICS_PORT": str(metrics_port), "HEALTH_CHECKS": ""}
    with Server(environ) as server:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        with (
            open_socket(server.url("/ws/_test/echo/?token=s3cr3t")) as one,
            open_socket(server.url("/ws/_test/echo/")),
        ):
            assert echoes(one)
            scrape = httpx.get(metrics_url, timeout=10).text
            assert "websocket_connections_open 2.0" in scrape
        with pytest.raises(InvalidStatus):
            open_socket(server.url("/ws/_test/echo/"), origin="https://evil.example")
        scrape = scrape_published(metrics_port)  # each worker's second's counts in
        with pytest.raises(InvalidStatus) as on_metrics_port:
            open_socket(metrics_url.replace("/metrics", "/ws/_test/echo/"))
        log = server.log()
    assert "websocket_connections_open 0.0" in scrape
    assert 'websocket_connections_closed_total{code="1000"} 2.0' in scrape
    assert 'websocket_handshakes_refused_total{status="403"} 1.0' in scrape
    assert 'websocket_messages_total{direction="in"} 1.0' in scrape
    assert on_metrics_port.value.response.status_code == 404
    lines = [line for line in log.splitlines() if '"WEBSOCKET /ws/_test/echo/' in line]
    assert len(lines) == 3
    assert '"close_code": 1000' in lines[0] or '"close_code": 1000' in lines[1]
    assert "s3cr3t" not in log  # neither the access line nor Uvicorn's own


def test_metrics_have_no_label_a_client_chooses_and_count_messages_while_sockets_are_open() -> None:
    """A client may close with any of 2,000 codes, and each was a time series; messages
    were counted only when their socket closed (a killed worker lost every count of its
    open sockets)."""
    metrics_port = free_port()
    environ = {"GUNICORN_WORKERS": "1", "METRICS_PORT": str(metrics_port), "HEALTH_CHECKS": ""}
    with Server(environ) as server:
        with open_socket(server.url("/ws/_test/echo/")) as open_one:
            for n in range(3):
                assert echoes(open_one, f"message {n}")
            while_open = scrape_published(metrics_port)
        for code in range(3000, 3040):
            with open_socket(server.url("/ws/_test/echo/")) as closing:
                closing.close(code=code)
        after = scrape_published(metrics_port)
    assert sample(while_open, "websocket_messages_total", direction="in") == 3
    assert sample(while_open, "websocket_messages_total", direction="out") == 3
    assert sample(after, "websocket_connections_closed_total", code="other") == 40
    assert sample(after, "websocket_connections_closed_total", code="1000") == 1
    assert 'code="30' not in after


def test_nothing_a_client_sends_is_a_traceback() -> None:
    """A path with no route is a 404 with its access line only (it was a 500 with a
    traceback), a text message that is not UTF-8 a 1007 with one warning line (it was
    a traceback), and the protocol errors RFC 6455 names are closes with 1002."""
    import struct

    from tests.support import raw_websocket as raw

    hostile = {
        "not UTF-8": (raw.frame(raw.TEXT, b"\xff\xfe"), 1007),
        "not UTF-8, fragmented": (
            raw.frame(raw.TEXT, b"\xe2\x82", fin=False) + raw.frame(0x0, b"\xff"),
            1007,
        ),
        "an unknown opcode": (raw.frame(0x3, b"x"), 1002),
        "not masked": (b"\x81\x01x", 1002),
        "a close code no one may send": (raw.frame(raw.CLOSE, struct.pack("!H", 1004)), 1002),
        "a continuation first": (raw.frame(0x0, b"x"), 1002),
        "compressed, not negotiated": (raw.frame(raw.TEXT, b"x", compressed=True), 1002),
        "a ping too long": (raw.frame(raw.PING, b"x" * 200), 1002),
    }
    with Server({"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}) as server:
        with raw.connect(server.port, "/ws/nowhere/") as unrouted:
            status = unrouted.status
        closes = {}
        for name, (data, _) in hostile.items():
            with raw.connect(server.port, "/ws/_test/echo/") as socket_:
                socket_.send(data)
                answer = socket_.read_to_end(timeout=10)
                closes[name] = (
                    struct.unpack("!H", answer[2:4])[0] if answer[:1] == b"\x88" else None
                )
        time.sleep(0.5)
        log = server.log()
    assert status == 404
    assert closes == {name: code for name, (_, code) in hostile.items()}
    assert "Traceback" not in log
    assert '"level": "ERROR"' not in log
    unrouted_lines = [line for line in log.splitlines() if "/ws/nowhere/" in line]
    assert len(unrouted_lines) == 1  # the access line
    assert '"status": 404' in unrouted_lines[0]
    assert log.count("a text message that is not UTF-8") == 2


def _raw_handshake(port: int, *, host: bytes = b"localhost", extra: bytes = b"") -> bytes:
    request = b"".join(
        [
            b"GET /ws/_test/echo/ HTTP/1.1\r\nHost: " + host + b"\r\n",
            b"Origin: http://localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            (extra + b"\r\n") if extra else b"",
            b"\r\n",
        ]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        return connection.recv(65536)


# Rolling restart behind a real load balancer --------------------------------------


class EchoClient(threading.Thread):
    """A client that keeps sending numbered messages and counts one acknowledged when
    its echo comes back. When the server closes its socket it reconnects through the
    balancer and sends again every message not yet acknowledged, as README's
    "Shutdown" section tells clients to."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.sent = 0
        self.acknowledged: set[int] = set()
        self.closes: list[Closed] = []
        self.failed_connects: list[str] = []
        self.connects = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._one_connection()
        except BaseException as error:  # reported by the test
            self.error = error

    def _one_connection(self) -> None:
        try:
            socket_ = open_socket(self.url)
        except (OSError, InvalidStatus) as error:
            self.failed_connects.append(repr(error))
            time.sleep(0.2)
            return
        self.connects += 1
        with socket_:
            try:
                for number in sorted(set(range(self.sent)) - self.acknowledged):
                    self._send(socket_, number)  # not acknowledged before the close
                while not self.stop.is_set():
                    self.sent += 1
                    self._send(socket_, self.sent - 1)
                    time.sleep(0.05)
            except ConnectionClosed as closed:
                self.closes.append(Closed.from_error(closed))

    def _send(self, socket_, number: int) -> None:
        message = f"{self.name}:{number}"
        socket_.send(message)
        assert socket_.recv(timeout=10) == message
        self.acknowledged.add(number)


def _ws_pod(port: int) -> Server:
    # As the HTTP rolling-restart test's pods (test_shutdown.py): the
    # delay (4 s) outlasts the balancer's detection of a draining pod (about 2 s).
    return Server(
        {
            "GUNICORN_PORT": str(port),
            "GUNICORN_WORKERS": "2",
            "GUNICORN_SHUTDOWN_DELAY": "4",
            "GUNICORN_GRACEFUL_TIMEOUT": "10",
            "HEALTH_CHECKS": "",
        }
    )


def test_a_rolling_restart_moves_every_client_to_the_new_pods_losing_no_message() -> None:
    """Two pods behind HAProxy, ten clients; SIGTERM pod 0, replace it, SIGTERM pod 1.
    Every socket is closed with 1001, every client reconnects (in the end to the
    replacement, the only pod left) and every message is acknowledged."""
    require_tool("haproxy")
    ports = [free_port(), free_port()]
    with ExitStack() as stack:
        pods = [stack.enter_context(_ws_pod(port)) for port in ports]
        balancer = stack.enter_context(HAProxy(ports))
        clients = [EchoClient(f"client{n}", balancer.url("/ws/_test/echo/")) for n in range(10)]
        for client in clients:
            client.start()
        time.sleep(2)
        pods[0].signal(signal.SIGTERM)
        assert pods[0].wait(timeout=30) == 0
        replacement = stack.enter_context(_ws_pod(ports[0]))
        balancer.wait_until_up([0])  # the new pod is ready before the next one goes
        pods[1].signal(signal.SIGTERM)
        assert pods[1].wait(timeout=30) == 0
        time.sleep(1)  # every client back, on the replacement
        before_stop = {client.name: client.sent for client in clients}
        time.sleep(1)
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(timeout=20)
        replacement_log = replacement.log()

    for client in clients:
        assert client.error is None, f"{client.name}: {client.error!r}"
        assert not client.is_alive()
        assert client.closes, f"{client.name} was never moved"
        assert {c.code for c in client.closes} == {1001}, (client.name, client.closes)
        assert all(c.clean for c in client.closes)
        assert client.connects == len(client.closes) + 1  # one reconnect per close
        assert client.failed_connects == [], (client.name, client.failed_connects)
        assert client.acknowledged == set(range(client.sent)), client.name
        assert client.sent > before_stop[client.name]  # still served at the end
    assert replacement_log.count('"WEBSOCKET /ws/_test/echo/"') == 0  # none has closed there yet
    moved = sum(len(client.closes) for client in clients)
    sent = sum(client.sent for client in clients)
    print(f"\nrolling restart: {moved} sockets closed with 1001 and reconnected, {sent} messages")


def test_websocket_settings_for_an_application_without_sockets_stop_the_server() -> None:
    """README's plain form has no WebSocket part: a WEBSOCKET_* variable would have no
    effect, and says so in one line (CONSTITUTION.md, rule 3)."""
    from tests.support.server import run

    command = ["gunicorn", "-c", "python:django_k8s_runtime.gunicorn"]
    result = run(
        [*command, "tests.site.asgi_http_only:application"], {"WEBSOCKET_PING_INTERVAL": "5"}
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in output
    assert output == (
        "configuration error: WEBSOCKET_PING_INTERVAL=5 has no effect because the application "
        "has no WebSocket part; pass it to get_asgi_application(websocket=...) or remove "
        "WEBSOCKET_PING_INTERVAL."
    )
