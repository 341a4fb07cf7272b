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
