"""Uvicorn's WebSocket protocol (``websockets-sansio``, what ``ws="auto"`` picks),
fitted: what a socket may hold of the worker is bounded, a client that takes
nothing is dropped, and a stopping worker says "going away" and waits.

* **What a socket has read and the application has not taken is bounded.** Uvicorn
  parsed each read whole and queued every message in it: with permessage-deflate a
  mebibyte of zeros is a kilobyte on the wire, and eight sockets took a worker past
  a gigabyte in a second. Here a read goes to the parser a frame at a time, none
  while a message waits for the application (``websockets`` bounds a message's
  inflated size across fragments): :func:`socket_memory_bound`.
* **What a socket writes is bounded, pongs included**: nothing more is parsed while
  the write buffer is over its high-water mark, and at most ``FRAMES_PER_TURN``
  frames a turn of the loop, so a ping flood shares the loop with the probes.
* **A client that takes nothing** for ``send_timeout`` (RESPONSE_SEND_TIMEOUT) is
  reset (SO_LINGER 0), with one warning line; the application gets its disconnect
  (1006), and what it sends until it has read it is dropped, so a Channels
  consumer's ``disconnect()`` runs and the socket's slot and access line come back.
* **At shutdown** a socket gets **1001 (going away)**, not Uvicorn's 1012 cut short:
  the application gets its disconnect after what it had received, what it sends
  after the close frame is dropped until it has read it, and the client's close
  frame is waited for (bounded by the close timeout, the send timeout and the
  graceful timeout). A quick shutdown closes the same way, at once.
* **Nothing a client sends is a traceback**: text that is not UTF-8 is closed 1007
  with one warning line; a handshake the parser refuses (400, 414, 431) gets one
  warning line and is counted as a refused HTTP head is.
* **Handshakes are not logged here**: Uvicorn's lines carry the query string, where
  browsers put tokens; the access log has one line per socket, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import SecurityError

from django_k8s_runtime.server.worker_state import this_worker

GOING_AWAY = 1001
GOING_AWAY_REASON = "server going away"
ABNORMAL_CLOSURE = 1006  # no close frame: what the application is told of a reset
INVALID_DATA = 1007

# What one read of the socket may leave unparsed: uvloop reads up to 250 KiB at once.
READ_BYTES = 256_000  # uvloop's UV_STREAM_RECV_BUF_SIZE
# The transport's write buffer beyond which nothing more is parsed (asyncio's and
# uvloop's default high-water mark), and the frame written last, which may pass it.
WRITE_HIGH_WATER = 64 * 1024
# Frames parsed in one turn of the event loop before the others get theirs.
FRAMES_PER_TURN = 64
# Uvicorn's close timeout: how long a closing handshake may take.
CLOSE_TIMEOUT = 10.0
DEFAULT_SEND_TIMEOUT = 10.0  # RESPONSE_SEND_TIMEOUT's default


def socket_memory_bound(max_message_bytes: int) -> int:
    """The most one socket holds of what its client sent and the application has not
    taken, and of what it writes before reading stops: a message waiting for the
    application, one being received, the rest of a read, and the write buffer at its
    high-water mark. (What the application itself keeps, and the last message it
    sent, are the application's.)"""
    return 2 * max_message_bytes + READ_BYTES + WRITE_HIGH_WATER


def _warnings_and_errors(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


# A child of Uvicorn's own logger, so its lines go where Uvicorn's go.
protocol_logger = logging.getLogger("uvicorn.error.websocket")
protocol_logger.addFilter(_warnings_and_errors)


def frame_length(data: bytes | bytearray, offset: int) -> int | None:
    """The length on the wire of the frame that starts at ``offset`` (RFC 6455 5.2),
    or None while its header is not all there."""
    available = len(data) - offset
    if available < 2:
        return None
    second = data[offset + 1]
    length = second & 0x7F
    header = 2 + (4 if second & 0x80 else 0)  # the mask
    if length == 126:
        header += 2
        if available < 4:
            return None
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
    elif length == 127:
        header += 8
        if available < 10:
            return None
        length = int.from_bytes(data[offset + 2 : offset + 10], "big")
    return header + length


class GoingAwayWebSocketProtocol(WebSocketsSansIOProtocol):
    _going_away = False
    _reset_by_us = False
    _told_the_application = False

    def __init__(self, *args: Any, send_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = self.conn.logger = protocol_logger
        self.close_timeout = CLOSE_TIMEOUT
        self.send_timeout = DEFAULT_SEND_TIMEOUT if send_timeout is None else send_timeout
        self._framing = False  # the handshake's request is parsed: frames follow
        self._unread = bytearray()  # what the socket gave and the parser has not had
        self._frame_left = 0  # bytes of the frame being fed still to come
        self._waiting = 0  # messages queued for the application and not taken yet
        self._feed_scheduled = False
        self._reading_paused = False
        self._lost = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._owed_at_check = 0  # the write buffer when the stall timer was set
        self._written_since_check = 0

    # The connection --------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport = _WatchedTransport(transport, self)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._unread = bytearray()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._steer_reading()  # the client takes nothing: read nothing more of it

    def resume_writing(self) -> None:
        super().resume_writing()
        self._feed_soon()

    # Reading: a frame at a time, and none while the application or the client lags

    def data_received(self, data: bytes) -> None:
        if not self._framing:
            # The handshake's request, whole: Uvicorn's HTTP protocol hands it over
            # rebuilt from the parsed head, and nothing after it.
            self._framing = True
            super().data_received(data)
            return
        if self._unread:
            self._unread += data
            self._consume(self._unread)
        else:
            self._consume(data)

    def _consume(self, buffer: bytes | bytearray) -> None:
        fed = self._feed(buffer)
        if buffer is self._unread:
            del self._unread[:fed]
        elif fed < len(buffer):
            self._unread = bytearray(buffer[fed:])
        self._steer_reading()

    def _may_parse(self) -> bool:
        """Whether more of what the client sent may be parsed now: no message waits
        for the application (once the close is sent, messages are dropped and the
        client's close frame is what is read), and the client takes what is written."""
        return (
            (self._waiting == 0 or self.close_sent)
            and self.writable.is_set()
            and not self._lost
            and self.conn.parser_exc is None
        )

    def _feed(self, buffer: bytes | bytearray) -> int:
        """Hand ``buffer`` to the parser, a frame at a time, while it may be parsed;
        the bytes handed over."""
        offset, end, frames = 0, len(buffer), 0
        while offset < end and self._may_parse():
            if self._frame_left == 0:
                if frames == FRAMES_PER_TURN:
                    self._feed_soon()  # after the event loop's other callbacks
                    break
                length = frame_length(buffer, offset)
                if length is None:
                    break  # the rest of the header is still on its way
                self._frame_left = length
                frames += 1
            size = min(self._frame_left, end - offset)
            piece = buffer if size == end else buffer[offset : offset + size]
            offset += size
            self._frame_left -= size
            self.conn.receive_data(piece)
            if self.conn.parser_exc is not None:
                self.handle_parser_exception()
                return end
            self.handle_events()
        self._write_pending()  # the pongs of this turn, together
        return offset

    def _feed_soon(self) -> None:
        if not self._feed_scheduled and not self._lost:
            self._feed_scheduled = True
            self.loop.call_soon(self._feed_unread)

    def _feed_unread(self) -> None:
        self._feed_scheduled = False
        if self._lost:
            return
        self._consume(self._unread)

    def _steer_reading(self) -> None:
        """Keep the socket read while what it gives can be parsed (as Uvicorn, reading
        pauses while a message waits for the application); else leave the rest in
        the kernel, which makes TCP slow the client down."""
        pause = not self._may_parse() or (bool(self._unread) and self._feed_scheduled)
        if pause == self._reading_paused or self._lost or self.transport.is_closing():
            return
        self._reading_paused = pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def handle_handshake_exception(self) -> None:
        """Uvicorn's answer (400, 414 or 431), with one line saying why; the reason
        only, never the request's own bytes (its headers may carry credentials)."""
        error = self.conn.handshake_exc
        too_large = isinstance(error, SecurityError)  # a line or the fields over the limits
        this_worker.connection_dropped("head_too_large" if too_large else "malformed")
        self.logger.warning(
            "WebSocket handshake refused: %s (from %s)",
            error,
            self.client[0] if self.client else "-",
        )
        super().handle_handshake_exception()

    def handle_ping(self) -> None:
        pass  # the pong is written with the turn's other output (_write_pending)

    def _write_pending(self) -> None:
        output = self.conn.data_to_send()
        if output and not self._lost and not self.transport.is_closing():
            self.transport.write(b"".join(output))

    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # as Uvicorn: the application is past its close; read on to the reply
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.logger.warning(
                    "WebSocket closed with 1007: a text message that is not UTF-8 (from %s)",
                    self.client[0] if self.client else "-",
                )
                self.conn.send_close(INVALID_DATA, "invalid UTF-8")
                self.handle_parser_exception()
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        self._waiting += 1

    async def receive(self) -> Any:
        message = await super().receive()
        kind = message["type"]
        if kind == "websocket.receive":
            self._waiting -= 1
            if self._waiting == 0 and not self._feed_scheduled and not self._lost:
                # The next message now, so the application's next receive() finds it
                # (a turn of the event loop per message cost a fifth of the rate).
                self._consume(self._unread)
        elif kind == "websocket.disconnect" and (self._going_away or self._reset_by_us):
            self._told_the_application = True
        return message

    # A client that takes nothing --------------------------------------------------

    def _written(self, size: int) -> None:
        """After each write: a buffer left behind means the kernel's is full, so the
        client's reading is watched from here on."""
        self._written_since_check += size
        if self._stall_timer is None and not self._lost:
            owed = self._owed()
            if owed:
                self._watch_stall(owed)

    def _owed(self) -> int:
        """What the transport still holds to write (0 for a transport that cannot
        say, as Uvicorn's tests' own)."""
        size = getattr(self.transport, "get_write_buffer_size", None)
        return size() if size is not None else 0

    def _watch_stall(self, owed: int) -> None:
        self._owed_at_check = owed
        self._written_since_check = 0
        self._stall_timer = self.loop.call_later(self.send_timeout, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_timer = None
        if self._lost:
            return
        owed = self._owed()
        if not owed:
            return  # all taken
        if owed < self._owed_at_check + self._written_since_check:
            self._watch_stall(owed)  # it took some: another period
            return
        self._reset(owed)

    def _reset(self, unsent: int) -> None:
        path = self.scope["path"] if self.handshake_initiated else "-"
        self.logger.warning(
            'WebSocket client took nothing for %gs, disconnected: %s "WEBSOCKET %s", '
            "%d bytes unsent",
            self.send_timeout,
            self.client[0] if self.client else "-",
            path,
            unsent,
        )
        self._reset_by_us = True
        self.stop_keepalive()
        if self.handshake_complete and self.initial_response is None:
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": ABNORMAL_CLOSURE, "reason": ""}
            )
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # Going away ---------------------------------------------------------------------

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and self.initial_response is None:
            self._go_away()
            return
        super().shutdown()  # a handshake still being decided, or a close under way

    def _go_away(self) -> None:
        self._going_away = True
        self.stop_keepalive()
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": GOING_AWAY, "reason": GOING_AWAY_REASON}
        )
        self.conn.send_close(GOING_AWAY, GOING_AWAY_REASON)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._feed_soon()  # the client's close frame must still be read
        # As after the application's own close: the client's close frame ends the
        # connection (Uvicorn's handle_close), or this timer does.
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind in ("websocket.send", "websocket.close"):
            await self.writable.wait()  # as Uvicorn's send() does first
            if self._going_away or self._reset_by_us:
                if kind == "websocket.send" and self._told_the_application:
                    raise ClientDisconnected  # it knows the socket is gone: stop it
                return  # too late for the client: the close is under way, or it is gone
        await super().send(message)
        if kind == "websocket.close":
            self._feed_soon()  # read on, to the client's close frame


class _WatchedTransport:
    """The connection's transport, each write reported to the protocol, which watches
    for a client that takes nothing (Uvicorn writes in many places)."""

    def __init__(self, transport: Any, protocol: GoingAwayWebSocketProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._transport.write(data)
        self._protocol._written(len(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
