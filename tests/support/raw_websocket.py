"""A WebSocket client made of a plain socket, for clients no library would be: one that
never reads, floods pings, or sends frames compressed ahead of time (a message that
inflates to a mebibyte costs it a kilobyte and no CPU).

It speaks just enough of RFC 6455 (and RFC 7692's permessage-deflate, offered with
``client_no_context_takeover`` so every compressed frame stands alone and the same
bytes can be sent again and again).
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@dataclass
class RawSocket:
    sock: socket.socket
    response: bytes  # the handshake's answer, head and whatever came with it

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes, seconds: float) -> int:
        """Send what the kernel takes within ``seconds``; the bytes sent."""
        self.sock.settimeout(seconds)
        sent = 0
        try:
            while sent < len(data):
                sent += self.sock.send(data[sent:])
        except (TimeoutError, BlockingIOError):
            pass
        finally:
            self.sock.settimeout(None)
        return sent

    def read_to_end(self, timeout: float) -> bytes:
        """Everything the server sends until it closes the connection."""
        self.sock.settimeout(timeout)
        received = []
        try:
            while chunk := self.sock.recv(65536):
                received.append(chunk)
        finally:
            self.sock.settimeout(None)
        return b"".join(received)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    port: int,
    path: str,
    *,
    deflate: bool = False,
    origin: str = "http://localhost",
    receive_buffer: int | None = None,
) -> RawSocket:
    """Open a socket to ``path`` on 127.0.0.1 and read the handshake's answer.
    ``receive_buffer`` shrinks the kernel's buffer for what the server sends, so a
    client that never reads fills it sooner."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    extension = (
        b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
        b"client_max_window_bits\r\n"
        if deflate
        else b""
    )
    sock.sendall(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
        b"Origin: " + origin.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: "
        + _KEY.encode()
        + b"\r\nSec-WebSocket-Version: 13\r\n"
        + extension
        + b"\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    sock.settimeout(None)
    return RawSocket(sock, response)


def connect_when_free(port: int, path: str, *, wait: float = 10, **options: Any) -> RawSocket:
    """:func:`connect`, again while the worker answers 503 (a socket closed a moment
    ago gives its slot back once its application has returned), for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        socket_ = connect(port, path, **options)
        if socket_.status != 503 or time.monotonic() > deadline:
            return socket_
        socket_.close()
        time.sleep(0.1)


def frame(opcode: int, payload: bytes, *, fin: bool = True, compressed: bool = False) -> bytes:
    """One masked frame, as a client must send it."""
    first = (0x80 if fin else 0) | (0x40 if compressed else 0) | opcode
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    mask = os.urandom(4)
    return head + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def deflated(payload: bytes) -> bytes:
    """``payload`` compressed as one message of permessage-deflate, alone (no context
    kept from a message before; the 12-bit window the server asks for)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def compressed_message(payload: bytes) -> bytes:
    """A binary message whose frame carries ``payload`` deflated."""
    return frame(BINARY, deflated(payload), compressed=True)


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason)
