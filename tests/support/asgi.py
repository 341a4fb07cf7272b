"""What the in-process tests need to play the server's part: scopes, a ``receive``
that behaves like Uvicorn's, a ``send`` that records, and httpx for whole requests.

Nothing here is a mock of our code: the layers under test are the real classes,
the applications behind them are tiny real ASGI apps, and time is real asyncio
time (tens of milliseconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
Message = dict[str, Any]


def run[T](coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    port: int = 8000,
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
        "client": ("10.0.0.9", 51000),
        "server": ("127.0.0.1", port),
    }


class Client:
    """Uvicorn's side of one request: the body once, then ``http.disconnect`` only
    when the client goes away (:meth:`disconnect`); a ``send`` that records."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self._request_delivered = False
        self._gone = asyncio.Event()

    async def receive(self) -> Message:
        if not self._request_delivered:
            self._request_delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def disconnect(self) -> None:
        self._gone.set()

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(starts[0]["headers"]) if starts else {}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


@dataclass
class Seen:
    """What a tiny app saw: the messages it received, and how it ended."""

    received: list[Message] = field(default_factory=list)
    cancelled: bool = False
    finished: bool = False


async def respond(send: Callable[[Message], Awaitable[None]], status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest application: 200 ``hello``."""
    await respond(send, 200, b"hello")


def client(app: Any, *, port: int = 8000) -> httpx.AsyncClient:
    """httpx talking to ``app`` in this process, as to a server on ``port``."""
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 51000))
    return httpx.AsyncClient(transport=transport, base_url=f"http://testserver:{port}")


def websocket_scope(
    path: str = "/ws/_test/echo/",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    port: int = 8000,
    http_response: bool = True,
) -> dict[str, Any]:
    """A handshake's scope, as Uvicorn's WebSocket protocol makes it (with the
    ``websocket.http.response`` extension unless ``http_response=False``)."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("10.0.0.9", 51000),
        "server": ("127.0.0.1", port),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if http_response else {},
    }


class SocketClient:
    """Uvicorn's side of one WebSocket: ``websocket.connect``, then what the test
    puts in (:meth:`message`, :meth:`close`); a ``send`` that records."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self._incoming: asyncio.Queue[Message] = asyncio.Queue()
        self._incoming.put_nowait({"type": "websocket.connect"})

    async def receive(self) -> Message:
        return await self._incoming.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def message(self, text: str) -> None:
        self._incoming.put_nowait({"type": "websocket.receive", "text": text})

    def close(self, code: int = 1000) -> None:
        self._incoming.put_nowait({"type": "websocket.disconnect", "code": code})

    @property
    def kinds(self) -> list[str]:
        return [m["type"] for m in self.sent]

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "websocket.http.response.start"]
        return starts[0]["status"] if starts else None


async def echo_socket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest WebSocket application: accept, echo, stop at the disconnect."""
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] != "websocket.disconnect":
        await send({"type": "websocket.send", "text": message.get("text")})


class FakeTransport:
    """The transport an HTTP protocol writes to, as Uvicorn's own protocol tests fake
    it: what was written, whether it was closed; never a socket."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False  # by the protocol, or by Uvicorn's connection_lost()
        self.closed_by_server = False  # before the connection was lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = {"sockname": ("127.0.0.1", 8000), "peername": ("10.0.0.9", 51000)}
        return extra.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def lose(self, protocol: Any) -> None:
        """The connection ends (the client goes): note whether the server had closed
        it, then tell the protocol, as the event loop would."""
        self.closed_by_server = self.closed
        protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        pass

    @property
    def status(self) -> int | None:
        """The status of the first response written, if any."""
        if not self.written.startswith(b"HTTP/1.1 "):
            return None
        return int(self.written[9:12])


def connected(
    protocol_class: type, app: Any = None, **protocol_kwargs: Any
) -> tuple[Any, FakeTransport]:
    """An HTTP protocol of ``protocol_class`` serving ``app`` (default :func:`hello`)
    over a :class:`FakeTransport`, on the running event loop."""
    from uvicorn import Config
    from uvicorn.server import ServerState

    config = Config(app or hello, lifespan="off", log_level="warning")
    protocol = protocol_class(
        config=config, server_state=ServerState(), app_state={}, **protocol_kwargs
    )
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport
