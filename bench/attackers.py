"""The hostile clients of issue 29, bounded: each runs until a deadline and sends at
most a fixed number of bytes, on loopback, and keeps its connections open (in a
``Held``) until the caller has read the worker's memory.

- **bursts**: WebSockets that send messages of a mebibyte of zeros, compressed ahead
  of time to about a kilobyte (permessage-deflate), and read nothing;
- **pings**: WebSockets that send pings as fast as the kernel takes them and never
  read a pong;
- **pipelining**: HTTP connections that pipeline ``GET /api/hello`` and read nothing;
- **slow bodies**: POSTs whose 100-byte body comes a byte a second.

The WebSocket frames are made by ``tests/support/raw_websocket.py``, the client the
runtime's own budget tests use (no library would be such a client).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.results import HostileOptions as Options
from tests.support import raw_websocket as raw

MIB = 1024 * 1024
CONNECT_SECONDS = 5  # a TCP connect on loopback (raw_websocket gives a handshake 10 s)
ECHO = "/ws/echo/"
HELLO = b"GET /api/hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
SLOW_HEAD = (
    b"POST /api/hello HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
)


class NotApplicable(Exception):
    """This server cannot be attacked so (it does not offer what the attack uses)."""


class Held:
    """The attackers' sockets, closed together once the worker's peak is read."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _send_until(sock: socket.socket, data: bytes, until: float) -> int:
    """Send ``data`` until it is all sent, the deadline passes or the connection
    fails; the bytes the kernel took."""
    sent = 0
    with contextlib.suppress(OSError):
        while sent < len(data) and (left := until - time.monotonic()) > 0:
            sock.settimeout(min(left, 0.2))
            with contextlib.suppress(TimeoutError):
                sent += sock.send(data[sent : sent + 65536])
    return sent


def _in_parallel(work: list[Callable[[], int]]) -> int:
    if not work:
        return 0
    with ThreadPoolExecutor(len(work)) as pool:
        return sum(pool.map(lambda job: job(), work))


def _websocket(port: int, held: Held, *, deflate: bool = False) -> raw.RawSocket:
    opened = raw.connect(
        port, ECHO, deflate=deflate, origin="http://127.0.0.1", receive_buffer=4096
    )
    held.keep(opened.sock)
    if opened.status != 101:
        raise NotApplicable(f"the handshake was answered {opened.status}")
    if deflate and b"permessage-deflate" not in opened.response.lower():
        raise NotApplicable("it does not negotiate permessage-deflate")
    return opened


def bursts(port: int, options: Options, until: float, held: Held) -> int:
    burst = raw.compressed_message(b"\0" * MIB) * options.burst_messages
    sockets = [_websocket(port, held, deflate=True) for _ in range(options.burst_sockets)]
    return _in_parallel([lambda s=s: _send_until(s.sock, burst, until) for s in sockets])


def pings(port: int, options: Options, until: float, held: Held) -> int:
    sockets = [_websocket(port, held) for _ in range(options.ping_clients)]
    return _in_parallel(
        [lambda s=s: _repeat(s.sock, _PINGS, options.ping_mib * MIB, until) for s in sockets]
    )


_PINGS = raw.frame(raw.PING, b"p" * 125) * 2000  # 262 KB a send


def pipelining(port: int, options: Options, until: float, held: Held) -> int:
    burst = HELLO * 512
    sockets = []
    for _ in range(options.pipeline_clients):
        sock = held.keep(socket.socket())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(CONNECT_SECONDS)
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return _in_parallel(
        [lambda s=s: _repeat(s, burst, options.pipeline_mib * MIB, until) for s in sockets]
    )


def _repeat(sock: socket.socket, data: bytes, limit: int, until: float) -> int:
    """Send ``data`` again and again, at most ``limit`` bytes, until the deadline or
    until the server resets the connection."""
    sent = 0
    while sent < limit and time.monotonic() < until:
        took = _send_until(sock, data[: limit - sent], min(until, time.monotonic() + 0.5))
        sent += took
        if took == 0:
            if _reset(sock):
                break
            time.sleep(0.05)  # the server stopped reading: as it should
    return sent


def _reset(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def slow_bodies(port: int, options: Options, until: float, held: Held) -> int:
    sockets = []
    sent = 0
    for _ in range(options.slow_bodies):
        if time.monotonic() >= until:
            break
        with contextlib.suppress(OSError):
            sock = held.keep(socket.create_connection(("127.0.0.1", port), CONNECT_SECONDS))
            sock.sendall(SLOW_HEAD + b"a")
            sent += len(SLOW_HEAD) + 1
            sockets.append(sock)
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setblocking(False)
                sent += sock.send(b"a")
    return sent


ATTACKS: dict[str, Callable[[int, Options, float, Held], int]] = {
    "bursts": bursts,
    "pings": pings,
    "pipelining": pipelining,
    "slow-bodies": slow_bodies,
}
MIX = "mix"


def attack(name: str, port: int, options: Options, held: Held) -> tuple[int, list[str]]:
    """Run one attack, or the mix of them all at once, for ``options.seconds`` (the
    attackers' connections held open until then, whenever they finish sending): the
    bytes the server took, and why any part could not run."""
    until = time.monotonic() + options.seconds
    left_out: list[str] = []

    def one(kind: str) -> int:
        try:
            return ATTACKS[kind](port, options, until, held)
        except NotApplicable as why:
            if name != MIX:
                raise
            left_out.append(f"{kind}: {why}")
        except OSError as error:  # a busy server may not answer a handshake in time
            left_out.append(f"{kind}: a connection failed ({error or type(error).__name__})")
        return 0

    sent = _in_parallel([lambda k=k: one(k) for k in (ATTACKS if name == MIX else [name])])
    time.sleep(max(0.0, until - time.monotonic()))
    return sent, left_out


class Bystander:
    """Another client, meanwhile: ``GET /api/hello`` every 0.2 s, each given 2 s."""

    TIMEOUT = 2.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.asked = 0
        self.answered = 0
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask, name="bystander", daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _ask(self) -> None:
        while not self._stop.wait(0.2):
            started = time.monotonic()
            self.asked += 1
            ok = False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), self.TIMEOUT) as sock,
            ):
                sock.settimeout(self.TIMEOUT)
                sock.sendall(HELLO.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
                ok = _read_all(sock, started + self.TIMEOUT).startswith(b"HTTP/1.1 200 ")
            elapsed = time.monotonic() - started
            self.slowest = max(self.slowest, min(elapsed, self.TIMEOUT))
            self.answered += ok and elapsed <= self.TIMEOUT


def _read_all(sock: socket.socket, until: float) -> bytes:
    received = b""
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received
