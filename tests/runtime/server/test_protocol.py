"""HttpProtocol in a real Uvicorn server in this process, real sockets.

test_protocol_under_gunicorn.py shows a request surviving a SIGHUP through Gunicorn;
here each connection state is set up exactly when the server begins to stop:
fresh, half-read, idle after a response, and silent past the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from uvicorn import Config, Server

from django_k8s_runtime.server.protocol import HttpProtocol
from tests.support.asgi import hello

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
GRACE = 0.3


class QuickGrace(HttpProtocol):
    first_request_grace = GRACE


@contextlib.asynccontextmanager
async def serving(protocol: type = QuickGrace) -> AsyncIterator[tuple[Server, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = Config(hello, http=protocol, lifespan="off", log_level="warning")
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - Uvicorn sets a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield server, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.05)  # accepted: the protocol exists
    return reader, writer


async def begin_stopping(server: Server) -> None:
    server.should_exit = True  # what a graceful stop (SIGTERM, SIGHUP, max-requests) sets
    await asyncio.sleep(0.2)  # Uvicorn's main loop notices within 0.1 s


async def response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head + await asyncio.wait_for(reader.read(5), 5)


@pytest.mark.parametrize("already_sent", [b"", REQUEST[:10]], ids=["fresh", "half-read"])
def test_a_request_on_its_way_when_the_server_stops_is_served(already_sent: bytes) -> None:
    async def scenario():
        async with serving() as (server, port):
            reader, writer = await connect(port)
            writer.write(already_sent)
            await writer.drain()
            await begin_stopping(server)
            writer.write(REQUEST[len(already_sent) :])
            await writer.drain()
            answer = await response(reader)
            writer.close()
            return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer
    assert b"connection: close" in answer.lower()
    assert answer.endswith(b"hello")


def test_an_idle_keep_alive_connection_is_closed_at_once() -> None:
    """It has been served; HTTP lets the server close it, and clients retry."""

    async def scenario():
        async with serving() as (server, port):
            reader, writer = await connect(port)
            writer.write(REQUEST)
            assert (await response(reader)).endswith(b"hello")
            await begin_stopping(server)
            closed = await asyncio.wait_for(reader.read(), 1)
            writer.close()
            return closed

    assert asyncio.run(scenario()) == b""


def test_a_connection_that_sends_nothing_is_closed_after_the_grace() -> None:
    async def scenario():
        async with serving() as (server, port):
            reader, writer = await connect(port)
            loop = asyncio.get_running_loop()
            stopping = loop.time()
            await begin_stopping(server)
            assert not reader.at_eof()  # still open after Uvicorn began stopping
            closed = await asyncio.wait_for(reader.read(), 5)
            waited = loop.time() - stopping
            writer.close()
            return closed, waited

    closed, waited = asyncio.run(scenario())
    assert closed == b""
    assert waited >= GRACE


def test_stock_uvicorn_drops_the_request_on_its_way() -> None:
    """The control: the behaviour the protocol exists to change."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    async def scenario():
        async with serving(HttpToolsProtocol) as (server, port):
            reader, writer = await connect(port)
            await begin_stopping(server)
            with contextlib.suppress(ConnectionError):
                writer.write(REQUEST)
                await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer

    assert asyncio.run(scenario()) == b""


# The keep-alive timer of a connection reset by its client -------------------------------


def keep_alive_timer_after_a_reset(protocol: type) -> object:
    """Serve one request on a keep-alive connection, reset it, and return the
    protocol's keep-alive timer as the reset left it."""
    import struct

    made: list[object] = []

    class Recorded(protocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            made.append(self)
            super().connection_made(transport)

    async def scenario():
        async with serving(Recorded) as (_, port):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(REQUEST)
            assert (await response(reader)).endswith(b"hello")
            await asyncio.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST: connection_lost(ConnectionResetError) on the server
            await asyncio.sleep(0.2)
            timer = made[-1].timeout_keep_alive_task
            return None if timer is None or timer.cancelled() else timer

    return asyncio.run(scenario())


def test_a_reset_connection_cancels_its_keep_alive_timer() -> None:
    """Else the connection's objects live until the timer fires (GUNICORN_KEEPALIVE)."""
    assert keep_alive_timer_after_a_reset(QuickGrace) is None


def test_stock_uvicorn_keeps_the_timer_of_a_reset_connection() -> None:
    """The control (httptools_impl.connection_lost cancels it only when exc is None).
    When this fails, Uvicorn has fixed it and the override can go."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert keep_alive_timer_after_a_reset(HttpToolsProtocol) is not None
