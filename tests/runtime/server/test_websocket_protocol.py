"""GoingAwayWebSocketProtocol in a real Uvicorn server in this process, with the real
``websockets`` client: what a socket sees when its worker stops.

Each behaviour that differs from Uvicorn's is shown against Uvicorn's own
``websockets-sansio`` protocol too (the ``stock`` tests): they document what is
changed, and fail the day Uvicorn changes it, so the fit can be dropped.
test_websockets.py shows the same through Gunicorn, with signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from uvicorn import Config, Server
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)

from django_k8s_runtime.server.websocket_guard import refuse
from django_k8s_runtime.server.websocket_protocol import GoingAwayWebSocketProtocol

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process

OURS, STOCK = GoingAwayWebSocketProtocol, WebSocketsSansIOProtocol


@dataclass
class Seen:
    """What the application saw of one socket."""

    received: list[dict[str, Any]] = field(default_factory=list)
    send_failed: BaseException | None = None
    late_answer_sent: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def disconnect_code(self) -> int | None:
        codes = [m.get("code") for m in self.received if m["type"] == "websocket.disconnect"]
        return codes[0] if codes else None


def echo_app(seen: list[Seen]):
    """Echoes; "slow" is answered after 0.5 s; "refuse" paths are refused with 503."""

    async def app(scope, receive, send) -> None:
        if scope["type"] != "websocket":
            return
        record = Seen()
        seen.append(record)
        try:
            await receive()  # websocket.connect
            if scope["path"] == "/refuse":
                await refuse(scope, send, 503, "full")
                return
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                record.received.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "slow":
                    await asyncio.sleep(0.5)
                    try:
                        await send({"type": "websocket.send", "text": "late"})
                        record.late_answer_sent = True
                    except Exception as error:  # what Uvicorn does to a late answer
                        record.send_failed = error
                        return
                else:
                    await send({"type": "websocket.send", "text": message.get("text")})
        finally:
            record.finished.set()

    return app


@contextlib.asynccontextmanager
async def serving(protocol: Any, **config: Any) -> AsyncIterator[tuple[Server, int, list[Seen]]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    seen: list[Seen] = []
    settings = {
        "http": "httptools",
        "lifespan": "off",
        "log_config": None,
        "ws_ping_interval": None,
        **config,
    }
    server = Server(Config(echo_app(seen), ws=protocol, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - Uvicorn sets a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield server, port, seen
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


def url(port: int, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{port}{path}"


async def closed_by_server(client: Any) -> ConnectionClosed:
    try:
        await asyncio.wait_for(client.recv(), 5)
    except ConnectionClosed as closed:
        return closed
    raise AssertionError("the socket stayed open")


@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
def test_a_stopping_server_closes_a_socket(protocol) -> None:
    async def scenario():
        async with serving(protocol) as (server, port, seen):
            async with connect(url(port)) as client:
                await client.send("hi")
                assert await client.recv() == "hi"
                server.should_exit = True  # a graceful stop: SIGTERM, SIGHUP, max-requests
                closed = await closed_by_server(client)
            await asyncio.wait_for(seen[0].finished.wait(), 5)
            return closed, seen[0]

    closed, seen = asyncio.run(scenario())
    if protocol is STOCK:
        # Uvicorn: 1012 and the TCP connection closed at once, the closing
        # handshake cut short: an error to the client.
        assert isinstance(closed, ConnectionClosedError)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1012
        return
    assert isinstance(closed, ConnectionClosedOK)  # a clean closing handshake
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert closed.rcvd.reason == "server going away"
    assert closed.sent is not None
    assert closed.sent.code == 1001
    assert seen.disconnect_code == 1001  # the application was told


@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
def test_an_answer_under_way_when_the_server_stops_does_not_fail(protocol) -> None:
    """The application is answering a message when the close goes out: its late
    answer is dropped quietly and it still gets its disconnect, where Uvicorn raises
    in ``send()`` and the application never reaches its disconnect handler."""

    async def scenario():
        async with serving(protocol) as (server, port, seen):
            async with connect(url(port)) as client:
                await client.send("slow")
                await asyncio.sleep(0.1)  # the application is asleep before answering
                server.should_exit = True
                closed = await closed_by_server(client)
            await asyncio.wait_for(seen[0].finished.wait(), 5)
            return closed, seen[0]

    closed, seen = asyncio.run(scenario())
    if protocol is STOCK:
        assert seen.send_failed is not None
        assert seen.disconnect_code is None
        return
    assert seen.send_failed is None
    assert seen.late_answer_sent  # dropped by the server: the client never saw it
    assert seen.disconnect_code == 1001
    assert isinstance(closed, ConnectionClosedOK)


def test_a_quick_shutdown_closes_with_1001_at_once() -> None:
    """Gunicorn's SIGINT/SIGQUIT: the worker sets force_exit too and does not wait."""

    async def scenario():
        async with serving(OURS) as (server, port, _), connect(url(port)) as client:
            server.should_exit = server.force_exit = True
            loop = asyncio.get_running_loop()
            started = loop.time()
            closed = await closed_by_server(client)
            return closed, loop.time() - started

    closed, waited = asyncio.run(scenario())
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert waited < 2


def test_a_message_over_the_limit_closes_the_socket_with_1009() -> None:
    async def scenario():
        async with serving(OURS, ws_max_size=1024) as (_, port, seen):
            async with connect(url(port)) as client:
                await client.send("x" * 1024)
                assert await client.recv() == "x" * 1024
                await client.send("x" * 1025)
                closed = await closed_by_server(client)
            await asyncio.wait_for(seen[0].finished.wait(), 5)
            return closed, seen[0]

    closed, seen = asyncio.run(scenario())
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009
    assert seen.disconnect_code == 1009


def test_a_client_that_stops_answering_pings_is_closed() -> None:
    """WEBSOCKET_PING_INTERVAL and _TIMEOUT: a vanished client does not hold a socket."""

    async def scenario():
        async with serving(OURS, ws_ping_interval=0.2, ws_ping_timeout=0.3) as (_, port, seen):
            # The client's own pong replies are switched off by never reading: a raw
            # handshake on a plain socket, then silence.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101")
            frames = await asyncio.wait_for(reader.read(), 5)  # pings, a close, then EOF
            writer.close()
            await asyncio.wait_for(seen[0].finished.wait(), 5)
            return frames, seen[0]

    frames, seen = asyncio.run(scenario())
    kinds = server_frames(frames)
    assert kinds[0][0] == 0x89  # a ping (unmasked, from the server)
    close = next(payload for opcode, payload in kinds if opcode == 0x88)
    assert close[:2] == (1011).to_bytes(2, "big")  # internal error
    assert seen.disconnect_code is not None  # the application was told (Uvicorn's 1005)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, payload) of each small unmasked frame a server sent. Parsed one
    by one: a ping's random payload may hold any byte, a close frame's first too."""
    frames = []
    while len(data) >= 2:
        length = data[1] & 0x7F
        assert length < 126, "only small control frames here"
        frames.append((data[0], data[2 : 2 + length]))
        data = data[2 + length :]
    return frames


def test_a_refused_handshake_is_not_logged_as_an_error(caplog) -> None:
    """The runtime's 400, 404, 503 and 504 answers to a handshake: Uvicorn logged each
    as "ASGI callable returned without completing handshake." until 0.55, which
    counts the handshake complete once the response starts (the runtime's own fit
    for it went with that release)."""

    async def scenario():
        async with serving(OURS) as (_, port, seen):
            with pytest.raises(InvalidStatus) as refused:
                await connect(url(port, "/refuse"))
            await asyncio.wait_for(seen[0].finished.wait(), 5)
            await asyncio.sleep(0.05)  # Uvicorn logs after the application returns
            return refused.value.response.status_code

    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        assert asyncio.run(scenario()) == 503
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (b"Content-Length: 5\r\n", b"400"),  # websockets takes no request body
        (b"Cookie: session=s3cr3t" + b"x" * 9000 + b"\r\n", b"431"),  # its 8 KiB line
    ],
    ids=["a-body", "a-line-over-8KiB"],
)
def test_a_handshake_websockets_refuses_is_answered_with_one_line(
    protocol, extra, status, caplog
) -> None:
    """Answered and closed by both (Uvicorn 0.55; 0.54 held the connection without an
    answer); the runtime also says why, in one line without the request's bytes."""

    async def scenario():
        async with serving(protocol) as (_, port, seen):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\nhello"
            )
            answer = await asyncio.wait_for(reader.read(), 5)  # to the server's close
            writer.close()
            return answer, seen

    with caplog.at_level(logging.INFO):
        answer, seen = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert seen == []  # the application never saw it
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if protocol is STOCK:
        assert warnings == []
    else:
        (line,) = warnings
        assert line.startswith("WebSocket handshake refused: ")
        assert "s3cr3t" not in line
        assert "127.0.0.1" in line


@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
def test_handshakes_and_their_query_strings_are_not_logged(protocol, caplog) -> None:
    """The access log has one line per socket, without the query (where browser
    clients put tokens); Uvicorn and websockets log the handshake at info, query
    and all."""

    async def scenario():
        async with (
            serving(protocol) as (_, port, _seen),
            connect(url(port, "/ws?token=s3cr3t")) as client,
        ):
            await client.send("hi")
            await client.recv()

    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        asyncio.run(scenario())
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("uvicorn"))
    if protocol is STOCK:
        assert "token=s3cr3t" in logged
    else:
        assert "token" not in logged
        assert "WebSocket" not in logged


# Beside the runtime's HTTP protocol ---------------------------------------------------


def test_sockets_are_not_http_connections_to_the_http_protocols_bounds(caplog) -> None:
    """The HTTP protocol's bounds (GUNICORN_WORKER_CONNECTIONS, REQUEST_HEAD_TIMEOUT)
    count and time HTTP connections: an open socket, handed over to the WebSocket
    protocol, is neither evicted as an idle connection nor timed out as a head."""
    import functools

    from django_k8s_runtime.server.limits import ConnectionLimits
    from django_k8s_runtime.server.protocol import HttpProtocol

    bounds = ConnectionLimits(head_timeout=0.3, connections=1)
    http = functools.partial(HttpProtocol, bounds=bounds)

    async def scenario():
        async with serving(OURS, http=http) as (_, port, _seen), connect(url(port)) as socket_:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)  # the app answers nothing: 500
            writer.close()
            await asyncio.sleep(0.6)  # twice the head timeout
            await socket_.send("still open")
            return answer, await asyncio.wait_for(socket_.recv(), 5)

    with caplog.at_level(logging.WARNING):
        answer, echoed = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 500")  # served, the socket beside it uncounted
    assert echoed == "still open"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "ASGI callable returned without starting response."
    ]


# What a socket may hold (issue 29) ------------------------------------------------------


@contextlib.asynccontextmanager
async def serving_app(app: Any, protocol: Any, **config: Any) -> AsyncIterator[tuple[Server, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    settings = {"http": "httptools", "lifespan": "off", "log_config": None, **config}
    server = Server(Config(app, ws=protocol, ws_ping_interval=None, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - Uvicorn sets a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield server, sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


def socket_protocols(server: Server) -> list[Any]:
    return [c for c in server.server_state.connections if isinstance(c, STOCK)]


async def raw_socket(port: int, *, receive_buffer: int | None = None) -> tuple[Any, Any]:
    """A handshake on a plain socket: the client then sends frames of its own making."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
def test_the_messages_of_one_read_wait_in_the_kernel_not_in_the_queue(protocol) -> None:
    """Twenty messages in one write, an application that takes none yet: Uvicorn parses
    the read whole and queues all twenty (with permessage-deflate, a mebibyte each for a
    kilobyte on the wire); here one waits, and the rest are parsed as it takes them,
    every one whole and in order, fragments and pings among them."""
    from tests.support import raw_websocket as raw

    gate = asyncio.Event()
    taken: list[Any] = []

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        while len(taken) < 21:
            message = await receive()
            taken.append(message.get("text"))

    async def scenario():
        async with serving_app(app, protocol) as (server, port):
            reader, writer = await raw_socket(port)
            burst = b"".join(raw.frame(raw.TEXT, f"m{n}".encode()) for n in range(20))
            burst += raw.frame(raw.PING, b"are you there")
            burst += raw.frame(raw.TEXT, b"frag", fin=False) + raw.frame(raw.PING, b"")
            burst += raw.frame(0x0, b"mented")
            writer.write(burst)
            await writer.drain()
            await asyncio.sleep(0.3)
            (connection,) = socket_protocols(server)
            queued = connection.queue.qsize()
            gate.set()
            for _ in range(100):
                if len(taken) == 21:
                    break
                await asyncio.sleep(0.02)
            pongs = await asyncio.wait_for(reader.read(64), 5)
            writer.close()
            return queued, pongs

    queued, pongs = asyncio.run(scenario())
    assert taken == [f"m{n}" for n in range(20)] + ["fragmented"]
    assert pongs[:2] == b"\x8a\x0d"  # the first ping's pong, its payload after
    assert queued == (21 if protocol is STOCK else 1)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
def test_a_client_that_takes_nothing_is_dropped_and_its_application_told(protocol) -> None:
    """The application sends, the client reads nothing: Uvicorn's ``send()`` waits for
    ever; here the socket is reset after the send timeout and the application gets its
    disconnect, its late ``send()`` dropped until it has read it."""
    outcome: dict[str, Any] = {}

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            for _ in range(2000):
                await send({"type": "websocket.send", "bytes": b"x" * 65536})
            outcome["sent"] = "all"
        except Exception as error:
            outcome["send"] = error
        outcome["received"] = await receive()

    kwargs = {"send_timeout": 0.5} if protocol is OURS else {}

    async def scenario():
        chosen = functools.partial(OURS, **kwargs) if kwargs else STOCK
        async with serving_app(app, chosen, ws_per_message_deflate=False) as (_, port):
            _, writer = await raw_socket(port, receive_buffer=4096)
            for _ in range(40):
                if "received" in outcome:
                    break
                await asyncio.sleep(0.1)
            writer.transport.abort()
            await asyncio.sleep(0.1)

    asyncio.run(scenario())
    if protocol is STOCK:
        assert "received" not in outcome or outcome["received"]["type"] == "websocket.disconnect"
        assert "sent" not in outcome
        return
    assert "send" not in outcome  # nothing raised while the application had not been told
    assert outcome["received"] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


@pytest.mark.parametrize("protocol", [OURS, STOCK], ids=["ours", "stock"])
def test_a_text_message_that_is_not_utf8_is_one_warning_line(protocol, caplog) -> None:
    from tests.support import raw_websocket as raw

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async def scenario():
        async with serving_app(app, protocol) as (_, port):
            reader, writer = await raw_socket(port)
            writer.write(raw.frame(raw.TEXT, b"\xff\xfe"))
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer

    with caplog.at_level(logging.INFO):
        answer = asyncio.run(scenario())
    assert answer[0] == 0x88
    assert answer[2:4] == (1007).to_bytes(2, "big")  # closed with 1007, both
    tracebacks = [r for r in caplog.records if r.exc_info]
    if protocol is STOCK:
        assert tracebacks
    else:
        assert not tracebacks
        assert any("not UTF-8" in r.getMessage() for r in caplog.records)


def test_a_frame_is_measured_from_its_header() -> None:
    from django_k8s_runtime.server.websocket_protocol import frame_length
    from tests.support import raw_websocket as raw

    for size in (0, 125, 126, 65535, 65536):
        frame = raw.frame(raw.BINARY, b"x" * size)
        assert frame_length(frame, 0) == len(frame)
        assert frame_length(b"??" + frame, 2) == len(frame)
        assert frame_length(frame[: 2 if size < 126 else 3], 0) in (None, len(frame))
    assert frame_length(b"\x82", 0) is None
    assert frame_length(raw.frame(raw.BINARY, b"x" * 70000)[:9], 0) is None
