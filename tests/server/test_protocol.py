"""A request on its way when its worker begins a graceful stop is still served."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.support.server import Server

REQUEST = b"GET /api/hello HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n\r\n"


def _read_response(connection: socket.socket) -> bytes:
    connection.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


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
    with Server({"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}) as running:
        yield running


def _read_to_the_end(connection: socket.socket) -> bytes:
    connection.settimeout(10)
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("path", ["/api/hello", "/_test/sleep?s=0.5", "/_test/async-sleep?s=0.5"])
def test_a_client_that_half_closes_after_its_request_is_answered(server, path: str) -> None:
    """``shutdown(SHUT_WR)`` once the request is sent (nc -N, some HTTP/1.0 clients):
    the view ran and the access log said 200, but the client got nothing."""
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(REQUEST.replace(b"/api/hello", path.encode()))
        connection.shutdown(socket.SHUT_WR)
        response = _read_to_the_end(connection)  # the server closes after answering
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), response
    assert b"connection: close" in head.lower()
    assert body.endswith(b"}"), response


def test_a_request_cut_short_by_the_client_is_not_answered(server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(
            b"POST /_test/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly part"
        )
        connection.shutdown(socket.SHUT_WR)
        assert _read_to_the_end(connection) == b""


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
