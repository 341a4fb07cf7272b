"""Request size limits in this process: BodyLimit around a tiny application that
reads its body, and the head's limits and deadline in HttpProtocol fed
bytes over a fake transport, as Uvicorn's own protocol tests feed theirs. The same
limits with real sockets through Gunicorn are in test_limits_under_gunicorn.py."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from django_k8s_runtime.server.limits import (
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    UNLIMITED_REQUEST_LINE,
    BodyLimit,
    ConnectionLimits,
    HeadLimits,
)
from django_k8s_runtime.server.protocol import HttpProtocol
from tests.support.asgi import FakeTransport, Seen, connected, http_scope, respond, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process

MAX_BYTES = 1024


class BodyClient:
    """Uvicorn's side of a request whose body arrives in ``chunks``, each ``gap``
    seconds after the one before; then silence (the client waits for its answer)."""

    def __init__(self, *chunks: bytes, gap: float = 0.0) -> None:
        self._messages = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        self.gap = gap
        self.sent: list[dict] = []
        self.taken = 0  # messages the server read

    async def receive(self) -> dict:
        if self._messages:
            if self.taken and self.gap:
                await asyncio.sleep(self.gap)
            self.taken += 1
            return self._messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def statuses(self) -> list[int]:
        return [m["status"] for m in self.sent if m["type"] == "http.response.start"]

    @property
    def complete(self) -> bool:
        """Whether the response ended (the server closes the connection then)."""
        bodies = [m for m in self.sent if m["type"] == "http.response.body"]
        return bool(bodies) and not bodies[-1].get("more_body", False)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def body_reader(seen: Seen, *, answer_first: bool = False):
    """Reads its whole body (until the last part, or a disconnect), then answers 200
    with the length it got; ``answer_first`` starts its response before reading."""

    async def app(scope, receive, send) -> None:
        if answer_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        length = 0
        while True:
            message = await receive()
            seen.received.append(message)
            if message["type"] == "http.disconnect":
                break
            length += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        if answer_first:
            await send({"type": "http.response.body", "body": b"%d" % length})
        else:
            await respond(send, 200, b"%d" % length)
        seen.finished = True

    return app


def post(
    *chunks: bytes,
    declared: int | None = None,
    answer_first: bool = False,
    gap: float = 0.0,
    linger: float = 5.0,
    linger_wait: float = 1.0,
    headers=None,
    scope_extra: dict | None = None,
):
    seen = Seen()
    # A body of unknown length comes in chunks, and the server says so.
    framing = (
        [(b"transfer-encoding", b"chunked")]
        if declared is None
        else [(b"content-length", b"%d" % declared)]
    )
    scope = {**http_scope("/upload", method="POST", headers=framing), **(scope_extra or {})}
    client = BodyClient(*chunks, gap=gap)
    app = BodyLimit(
        body_reader(seen, answer_first=answer_first),
        max_bytes=MAX_BYTES,
        headers=headers,
        linger_seconds=linger,
        linger_wait_seconds=linger_wait,
    )

    async def request() -> float:
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(app(scope, client.receive, client.send), 10)
        return asyncio.get_running_loop().time() - started

    client.seconds = run(request())
    return client, seen


# The body ---------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_answered_413_naming_the_variable() -> None:
    client, seen = post(b"x" * (MAX_BYTES + 1), declared=MAX_BYTES + 1)
    assert client.statuses == [413]
    assert seen.received == []  # the application never read a byte of it
    start = client.sent[0]
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(client.body) == {
        "error": "request body too large: over REQUEST_MAX_BODY_SIZE=1024 bytes"
    }
    assert (b"content-length", b"%d" % len(client.body)) in start["headers"]
    assert client.complete


def test_the_413_names_the_limit_in_mib_and_the_log_line_names_it_too(caplog) -> None:
    async def never(scope, receive, send) -> None:
        raise AssertionError("the application ran")

    size = 32 * 1024 * 1024
    scope = http_scope("/upload", method="POST", headers=[(b"content-length", b"%d" % (size + 1))])
    client = BodyClient(b"")
    with caplog.at_level("WARNING", logger="django_k8s_runtime.server.limits"):
        run(BodyLimit(never, max_bytes=size)(scope, client.receive, client.send))
    assert "REQUEST_MAX_BODY_SIZE=33554432 bytes (32 MiB)" in json.loads(client.body)["error"]
    (line,) = [record.getMessage() for record in caplog.records]
    assert line == (
        "request body refused with 413: Content-Length 33554433 is over "
        "REQUEST_MAX_BODY_SIZE=33554432 bytes (32 MiB): POST /upload"
    )


def test_the_413_carries_the_headers_it_is_given() -> None:
    given = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
    client, _ = post(b"x" * 2000, declared=2000, headers=lambda scope: given)
    assert client.statuses == [413]
    for header in given:
        assert header in client.sent[0]["headers"]


def test_the_rest_of_a_refused_body_is_read_before_the_answer_ends() -> None:
    """The client writes its whole body before it reads: the server reads it all and
    throws it away, then ends the answer (and closes), so no reset loses the 413."""
    parts = [b"x" * 1000] * 5
    client, seen = post(*parts, declared=5000, gap=0.05)
    assert client.statuses == [413]
    assert client.taken == 5  # every part read...
    assert seen.received == []  # ...and none of it given to the application
    assert client.complete
    # The answer went out before the body was read; only its end waited.
    assert [m["type"] for m in client.sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]


def test_a_client_that_stops_sending_is_closed_after_the_lingering_wait() -> None:
    client, _ = post(
        b"x" * 1000, b"x" * 1000, b"x" * 1000, declared=10_000, gap=3.0, linger_wait=0.2
    )
    assert client.taken == 1
    assert client.complete
    assert client.seconds < 2.0  # the next part would have come after 3 s


def test_the_lingering_ends_after_its_time_however_fast_the_body_comes() -> None:
    client, _ = post(*[b"x" * 100] * 200, declared=20_000, gap=0.01, linger=0.3, linger_wait=1.0)
    assert client.complete
    assert 0.25 < client.seconds < 1.5  # the whole body takes 2 s or more
    assert client.taken < 200


def test_the_lingering_ends_before_the_requests_deadline() -> None:
    class Deadline:  # the part of server/timeout.py's Deadline the limit reads
        at = 0.0

    async def scenario() -> float:
        deadline = Deadline()
        deadline.at = asyncio.get_running_loop().time() + 0.8  # 0.3 s once the margin is kept
        scope = {
            **http_scope("/upload", method="POST", headers=[(b"content-length", b"20000")]),
            "deadline": deadline,
        }
        client = BodyClient(*[b"x" * 100] * 200, gap=0.01)
        app = BodyLimit(body_reader(Seen()), max_bytes=MAX_BYTES, linger_wait_seconds=1.0)
        started = asyncio.get_running_loop().time()
        await app(scope, client.receive, client.send)
        assert client.complete
        return asyncio.get_running_loop().time() - started

    assert run(scenario()) < 1.5  # the whole body takes 2 s or more


def test_a_body_of_exactly_the_limit_is_served() -> None:
    client, _ = post(b"x" * MAX_BYTES, declared=MAX_BYTES)
    assert client.statuses == [200]
    assert client.sent[-1]["body"] == b"%d" % MAX_BYTES


def test_a_chunked_body_is_cut_as_it_passes_the_limit_and_its_rest_read() -> None:
    client, seen = post(b"x" * 1000, b"x" * 1000, b"x" * 1000, b"x" * 1000)
    assert client.statuses == [413]  # the application's own 200 is dropped
    assert [m["type"] for m in seen.received] == ["http.request", "http.disconnect"]
    assert seen.finished
    assert client.taken == 4  # the two parts after the limit were read, and dropped
    assert client.complete
    assert b"REQUEST_MAX_BODY_SIZE=1024" in client.body


@pytest.mark.parametrize(
    ("http_version", "headers", "counted"),
    [
        ("1.1", [], False),  # no length and no chunks: HTTP/1 says there is no body
        ("1.1", [(b"content-length", b"10")], False),  # the parser reads no more
        ("1.1", [(b"transfer-encoding", b"chunked")], True),
        ("2", [], True),  # HTTP/2 may send a body without declaring its length
    ],
)
def test_only_a_body_of_unknown_length_is_counted(http_version, headers, counted) -> None:
    seen_receive = []

    async def app(scope, receive, send) -> None:
        seen_receive.append(receive)

    client = BodyClient(b"")
    scope = {**http_scope("/upload", method="POST", headers=headers), "http_version": http_version}
    run(BodyLimit(app, max_bytes=MAX_BYTES)(scope, client.receive, client.send))
    assert (seen_receive[0] != client.receive) is counted


def test_a_body_over_the_limit_after_the_response_began_only_stops_the_reading() -> None:
    """The status is out already: no 413 can follow it; the application hears the
    client leave, and what it sends after is not written."""
    client, seen = post(b"x" * 1000, b"x" * 1000, answer_first=True)
    assert client.statuses == [200]
    assert [m["type"] for m in client.sent] == ["http.response.start"]
    assert seen.received[-1] == {"type": "http.disconnect"}


def test_a_length_that_is_not_a_number_is_left_to_the_parser() -> None:
    seen = Seen()
    scope = http_scope("/upload", method="POST", headers=[(b"content-length", b"ten")])
    client = BodyClient(b"0123456789")
    run(BodyLimit(body_reader(seen), max_bytes=MAX_BYTES)(scope, client.receive, client.send))
    assert client.statuses == [200]


# The head's limits, as Gunicorn normalises its settings -----------------------------


@pytest.mark.parametrize(
    ("line", "fields", "field_size", "expected"),
    [
        (4094, 100, 8190, HeadLimits(4094, 100, 8190)),  # Gunicorn's defaults
        (0, 0, 0, HeadLimits(UNLIMITED_REQUEST_LINE, MAX_HEADERS, 8190)),  # 0: unlimited
        (-1, -1, -1, HeadLimits(MAX_REQUEST_LINE, MAX_HEADERS, 8190)),
        (99999, 99999, 99999, HeadLimits(MAX_REQUEST_LINE, MAX_HEADERS, 99999)),
    ],
)
def test_gunicorns_settings_are_normalised_as_gunicorn_does(
    line: int, fields: int, field_size: int, expected: HeadLimits
) -> None:
    cfg = SimpleNamespace(
        limit_request_line=line, limit_request_fields=fields, limit_request_field_size=field_size
    )
    assert HeadLimits.from_gunicorn(cfg) == expected


LIMITS = HeadLimits(request_line=100, fields=4, field_size=64)


def request_line(length: int) -> bytes:
    """``GET /aaa... HTTP/1.1``, ``length`` bytes long."""
    return b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"


def head(line: bytes = b"GET / HTTP/1.1", *fields: bytes) -> bytes:
    return b"\r\n".join([line, b"Host: x", *fields]) + b"\r\n\r\n"


def feed(*chunks: bytes, limits: HeadLimits = LIMITS, settle: float = 0.05) -> FakeTransport:
    async def scenario() -> FakeTransport:
        protocol, transport = connected(HttpProtocol, limits=limits)
        for chunk in chunks:
            if not transport.closed:
                protocol.data_received(chunk)
            await asyncio.sleep(0)
        await asyncio.sleep(settle)  # the application answers a request that passed
        transport.lose(protocol)
        return transport

    return run(scenario())


@pytest.mark.parametrize(("length", "status"), [(100, 200), (101, 414)])
def test_a_request_line_is_allowed_up_to_exactly_its_limit(length: int, status: int) -> None:
    transport = feed(head(request_line(length)))
    assert transport.status == status
    assert transport.closed_by_server == (status != 200)


@pytest.mark.parametrize(("count", "status"), [(3, 200), (4, 431)])  # Host is the 4th/5th
def test_header_fields_are_allowed_up_to_exactly_their_number(count: int, status: int) -> None:
    fields = [b"X-%d: y" % i for i in range(count)]
    assert feed(head(b"GET / HTTP/1.1", *fields)).status == status


@pytest.mark.parametrize(("size", "status"), [(64, 200), (65, 431)])
def test_a_header_field_is_allowed_up_to_exactly_its_size(size: int, status: int) -> None:
    field = b"X-A: " + b"v" * (size - len(b"X-A: "))  # name, ": " and value
    assert feed(head(b"GET / HTTP/1.1", field)).status == status


def test_a_field_that_never_ends_is_cut_where_no_head_within_the_limits_could_go() -> None:
    """httptools gathers a field whole before it reports it: the protocol feeds it no
    more than a head within the limits could hold, whatever one read brings."""
    transport = feed(b"GET / HTTP/1.1\r\nX-A: " + b"v" * 100_000)
    assert transport.status == 431
    assert b"request head over %d bytes" % LIMITS.head_bytes in transport.written


def test_a_request_line_that_never_ends_is_answered_414() -> None:
    transport = feed(b"GET /" + b"a" * 100_000)
    assert transport.status == 414


def test_a_head_within_the_limits_may_arrive_a_byte_at_a_time() -> None:
    whole = head(request_line(100), b"X-A: " + b"v" * 59)
    transport = feed(*(whole[i : i + 1] for i in range(len(whole))), settle=0.1)
    assert transport.status == 200


def test_each_request_on_a_keep_alive_connection_has_the_whole_limit() -> None:
    """The head's byte count starts again with each request: ten heads together are
    far over one head's limit, each alone within it."""
    one = head(request_line(100), b"X-A: " + b"v" * 59)
    assert len(one) * 10 > LIMITS.head_bytes
    transport = feed(*([one] * 10), settle=0.2)
    assert transport.written.count(b"HTTP/1.1 200 OK") == 10
    assert not transport.closed_by_server


# The head's deadline ----------------------------------------------------------------


def test_a_head_not_complete_in_time_is_answered_408() -> None:
    async def scenario() -> FakeTransport:
        bounds = ConnectionLimits(head_timeout=0.05)
        protocol, transport = connected(HttpProtocol, bounds=bounds)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then silence
        await asyncio.sleep(0.2)
        transport.lose(protocol)
        return transport

    transport = run(scenario())
    assert transport.status == 408
    assert transport.closed_by_server


def test_a_connection_that_sends_nothing_in_time_is_closed_without_an_answer() -> None:
    async def scenario() -> FakeTransport:
        bounds = ConnectionLimits(head_timeout=0.05)
        protocol, transport = connected(HttpProtocol, bounds=bounds)
        await asyncio.sleep(0.2)
        transport.lose(protocol)
        return transport

    transport = run(scenario())
    assert transport.written == b""
    assert transport.closed_by_server
