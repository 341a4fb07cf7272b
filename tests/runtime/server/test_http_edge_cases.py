"""HTTP/1.1 at its edges (RFC 9112: framing, pipelining, ``Expect``, HEAD, obs-fold,
Transfer-Encoding with Content-Length...), sent as raw bytes to plain Uvicorn and to
Uvicorn with the runtime's protocol, both serving the same echo application
(tests/support/protocol_server.py): the answers must be the same bytes, but where
this file says why not. A change to the protocol cannot drift from Uvicorn unseen."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from harness.processes import free_port
from tests.support.server import ROOT

pytestmark = pytest.mark.slow

CRLF = b"\r\n"


def req(*lines: bytes, body: bytes = b"") -> bytes:
    return CRLF.join(lines) + CRLF + CRLF + body


GET = req(b"GET / HTTP/1.1", b"Host: a")
CASES: dict[str, bytes] = {
    "get": GET,
    "pipelined": GET * 3,
    "head": req(b"HEAD / HTTP/1.1", b"Host: a"),
    "post with content-length": req(b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: 5")
    + b"hello",
    "post chunked, with a trailer": req(
        b"POST /p HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked"
    )
    + b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "chunk extension": req(b"POST /p HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
    + b"5;name=value\r\nhello\r\n0\r\n\r\n",
    "expect 100-continue": req(
        b"POST /p HTTP/1.1", b"Host: a", b"Expect: 100-continue", b"Content-Length: 5"
    )
    + b"hello",
    "http/1.0 without host": req(b"GET / HTTP/1.0"),
    "http/1.0 keep-alive": req(b"GET / HTTP/1.0", b"Connection: keep-alive") * 2,
    "connection close": req(b"GET / HTTP/1.1", b"Host: a", b"Connection: close") + GET,
    "obs-fold": req(b"GET / HTTP/1.1", b"Host: a", b"X-A: one", b"  two"),
    "transfer-encoding and content-length": req(
        b"POST /p HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 5"
    )
    + b"0\r\n\r\n",
    "two different content-lengths": req(
        b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: 5", b"Content-Length: 6"
    )
    + b"hello!",
    "two equal content-lengths": req(
        b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: 5", b"Content-Length: 5"
    )
    + b"hello",
    "content-length with a plus": req(b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: +5")
    + b"hello",
    "negative content-length": req(b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: -1"),
    "invalid chunk size": req(b"POST /p HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
    + b"zz\r\nhello\r\n0\r\n\r\n",
    "gzip, chunked": req(b"POST /p HTTP/1.1", b"Host: a", b"Transfer-Encoding: gzip, chunked")
    + b"0\r\n\r\n",
    "chunked not last": req(b"POST /p HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked, gzip")
    + b"0\r\n\r\n",
    "space before the colon": req(b"GET / HTTP/1.1", b"Host : a"),
    "NUL in a value": req(b"GET / HTTP/1.1", b"Host: a", b"X-A: a\x00b"),
    "bare LF": b"GET / HTTP/1.1\nHost: a\n\n",
    "absolute-form target": req(b"GET http://a/x?y=1 HTTP/1.1", b"Host: a"),
    "asterisk-form OPTIONS": req(b"OPTIONS * HTTP/1.1", b"Host: a"),
    "percent-encoded path": req(b"GET /caf%C3%A9/%2F?q=%20 HTTP/1.1", b"Host: a"),
    "invalid percent-encoding": req(b"GET /%zz HTTP/1.1", b"Host: a"),
    "no host in HTTP/1.1": req(b"GET / HTTP/1.1"),
    "two hosts": req(b"GET / HTTP/1.1", b"Host: a", b"Host: b"),
    "lowercase method": req(b"get / HTTP/1.1", b"Host: a"),
    "unknown method": req(b"FOO / HTTP/1.1", b"Host: a"),
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "upgrade to h2c not taken": req(
        b"GET / HTTP/1.1",
        b"Host: a",
        b"Connection: Upgrade, HTTP2-Settings",
        b"Upgrade: h2c",
        b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
    ),
    "UTF-8 in a value": req(b"GET / HTTP/1.1", b"Host: a", "X-A: café".encode()),
    "a large header, within the limits": req(b"GET / HTTP/1.1", b"Host: a", b"X-A: " + b"a" * 8000),
    "empty line before the request": CRLF + GET,
    "a body, then a pipelined request": req(b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: 5")
    + b"hello"
    + GET,
    "trailing whitespace in a value": req(b"GET / HTTP/1.1", b"Host: a", b"X-A: b  "),
    "request line over 4094 bytes": req(b"GET /" + b"a" * 5000 + b" HTTP/1.1", b"Host: a"),
    "101 header fields": req(b"GET / HTTP/1.1", *(b"X-%d: 1" % n for n in range(101))),
}

# Where the runtime answers otherwise, and why (each must still differ).
DIFFERS = {
    "request line over 4094 bytes": (
        b"HTTP/1.1 414 ",
        "Gunicorn's limit_request_line (GUNICORN_LIMIT_REQUEST_LINE), which Uvicorn ignores",
    ),
    "101 header fields": (
        b"HTTP/1.1 431 ",
        "Gunicorn's limit_request_fields (GUNICORN_LIMIT_REQUEST_FIELDS), which Uvicorn ignores",
    ),
}


@contextlib.contextmanager
def serving(protocol: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.protocol_server", protocol, str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def exchange(port: int, data: bytes) -> tuple[bytes, bool]:
    """What the server answers to ``data``, and whether it closed the connection:
    read until it closes, or is quiet for half a second."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(data)
        sock.settimeout(0.5)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return answer, False
            except ConnectionResetError:
                return answer, True
            if not chunk:
                return answer, True
            answer += chunk


@pytest.fixture(scope="module")
def answers() -> dict[str, dict[str, tuple[bytes, bool]]]:
    found: dict[str, dict[str, tuple[bytes, bool]]] = {}
    for protocol in ("uvicorn", "runtime"):
        with serving(protocol) as port:
            found[protocol] = {name: exchange(port, data) for name, data in CASES.items()}
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_the_runtime_answers_as_plain_uvicorn(answers, case: str) -> None:
    uvicorn, runtime = answers["uvicorn"][case], answers["runtime"][case]
    if case in DIFFERS:
        status, _why = DIFFERS[case]
        assert runtime != uvicorn
        assert runtime[0].startswith(status), runtime
        return
    assert runtime == uvicorn
