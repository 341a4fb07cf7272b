"""A request on its way when its worker begins a graceful stop is still served."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from tests.support.server import Server

REQUEST = b"GET /_test/hello HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n\r\n"


def _read_response(connection: socket.socket) -> bytes:
    connection.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.slow
@pytest.mark.parametrize("already_sent", [b"", REQUEST[:20]], ids=["fresh", "half-read"])
def test_a_request_on_its_way_during_sighup_is_served(already_sent: bytes) -> None:
    with Server({"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}) as server:
        (old_worker,) = server.wait_for_workers(1)
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            connection.sendall(already_sent)
            time.sleep(0.3)  # the old worker has accepted it
            server.signal(signal.SIGHUP)  # new worker up, old one told to stop
            deadline = time.monotonic() + 10
            while old_worker in server.workers() and time.monotonic() < deadline:
                if "Shutting down" in server.log():
                    break
                time.sleep(0.05)
            time.sleep(0.2)
            connection.sendall(REQUEST[len(already_sent) :])
            response = _read_response(connection)
        assert response.startswith(b"HTTP/1.1 200 OK"), response
        assert b"connection: close" in response.lower()


@pytest.fixture(scope="module")
def server():
    # The plain form: no WebSocket part, so an upgrade is not taken.
    environ = {"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}
    with Server(environ, application="tests.site.asgi_http_only:application") as running:
        yield running


def _read_to_the_end(connection: socket.socket) -> bytes:
    connection.settimeout(10)
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", ["/_test/sleep?s=1", "/_test/cancellable-sleep?s=1"], ids=["sync-view", "async-view"]
)
def test_a_client_that_leaves_before_its_response_is_logged_as_gone(server, path: str) -> None:
    """A half-close after the request (nc -N) reads, to the server, as a client gone,
    as it does to nginx: it got no response, while the access log said 200 for a
    synchronous view, which runs to its end. The log now says what happened (as under
    Django's handler, nothing is sent for a client that left); an async view is
    cancelled, as for any client that leaves."""
    request_id = f"half-closed-{path[7:12]}-0001"
    head = REQUEST.replace(b"/_test/hello", path.encode()).replace(
        b"\r\n\r\n", f"\r\nX-Request-ID: {request_id}\r\n\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head)
        connection.shutdown(socket.SHUT_WR)
        assert _read_to_the_end(connection) == b""
    deadline = time.monotonic() + 10
    while request_id not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    (line,) = [
        json.loads(line) for line in server.log_lines() if f'"request_id": "{request_id}"' in line
    ]
    assert line["logger"] == "django_k8s_runtime.access"
    assert line["status"] == 499, line


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_an_upgrade_not_taken_is_answered_over_http_with_one_warning(server, upgrade) -> None:
    """Uvicorn logged two warnings per attempt, the second advising to install a
    WebSocket library."""
    before = server.log().count('"level": "WARNING"')
    headers = (
        b"Connection: Upgrade\r\nUpgrade: " + upgrade + b"\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(REQUEST.replace(b"\r\n\r\n", b"\r\n" + headers + b"\r\n"))
        assert _read_response(connection).startswith(b"HTTP/1.1 200 OK")
    time.sleep(0.3)  # a second warning, if there were one, would be out by now
    warnings = [line for line in server.log_lines() if '"level": "WARNING"' in line][before:]
    assert len(warnings) == 1, warnings
    assert f"Upgrade to '{upgrade.decode()}' not supported" in warnings[0]
