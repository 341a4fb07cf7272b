"""A real WebSocket client (the ``websockets`` library's, threaded) against a test
server, and what a socket saw when it closed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect

ORIGIN = "http://localhost"  # a host in the test servers' DJANGO_ALLOWED_HOSTS


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http")


def open_socket(http_url: str, *, origin: str | None = ORIGIN, **options: Any) -> ClientConnection:
    """A socket to ``http_url`` (a server's ``url(path)``), as a browser on an allowed
    origin opens it; no proxy from the environment, bounded waits."""
    options.setdefault("open_timeout", 10)
    return connect(ws_url(http_url), origin=origin, proxy=None, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Closed:
    code: int | None  # the close code the server sent; None: no close frame
    clean: bool  # the closing handshake completed with a normal code (1000, 1001)
    at: float  # time.monotonic() when the client saw it

    @classmethod
    def from_error(cls, error: ConnectionClosed) -> Closed:
        code = error.rcvd.code if error.rcvd is not None else None
        return cls(code, isinstance(error, ConnectionClosedOK), time.monotonic())


def wait_closed(socket: ClientConnection, timeout: float) -> Closed:
    """Read (and drop) messages until the server closes the socket."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the socket was still open after {timeout}s")
        try:
            socket.recv(timeout=left)
        except TimeoutError:
            continue
        except ConnectionClosed as error:
            return Closed.from_error(error)
