"""Request size limits (server/limits.py, server/protocol.py) with real sockets against
real Gunicorn: the right status, no growth in the worker's memory or /tmp, and the
server keeps serving."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import socket
from pathlib import Path

import httpx
import pytest

from django_k8s_runtime import env
from tests.support.server import Server

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
LIMIT = int(env.REQUEST_MAX_BODY_SIZE.default)  # the default: the server sets none


@pytest.fixture(scope="module")
def server():
    with Server({"GUNICORN_WORKERS": "1"}) as running:
        yield running


def worker(server: Server) -> int:
    (pid,) = server.workers()
    return pid


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
    return int(kib) / 1024


def files_under_tmp(pid: int) -> list[str]:
    """The worker's open temporary files (Django spools a large body to a deleted one)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("/tmp") and target.endswith("(deleted)"):
            found.append(target)
    return found


def exchange(server: Server, head: bytes, body_chunks: list[bytes] = ()) -> tuple[bytes, int]:
    """Send a request (stopping when the server closes) and return what came back and
    how many bytes the server took before it did."""
    sent = 0
    response = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        try:
            for piece in [head, *body_chunks]:
                for start in range(0, len(piece), 65536):
                    client.sendall(piece[start : start + 65536])
                    sent += len(piece[start : start + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := client.recv(65536):
                response += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return response, sent


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])


def request_head(path: str = "/_test/hello", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "X-Forwarded-Proto: https"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def still_serving(server: Server) -> None:
    assert server.get("/_test/hello").status_code == 200


def test_a_request_line_over_the_limit_is_answered_414(server: Server) -> None:
    response, _ = exchange(server, request_head("/_test/hello?q=" + "x" * 5000))
    assert status_of(response) == 414
    assert b"connection: close" in response.lower()
    ok, _ = exchange(server, request_head("/_test/hello?q=" + "x" * 3900))
    assert status_of(ok) == 200  # within Gunicorn's 4094
    still_serving(server)


def test_a_header_field_over_the_limit_is_answered_431(server: Server) -> None:
    response, _ = exchange(server, request_head(headers={"X-Big": "y" * 9000}))
    assert status_of(response) == 431
    ok, _ = exchange(server, request_head(headers={"X-Big": "y" * 8000}))
    assert status_of(ok) == 200
    still_serving(server)


def test_more_header_fields_than_the_limit_are_answered_431(server: Server) -> None:
    many = {f"X-Field-{n}": "1" for n in range(101)}
    response, _ = exchange(server, request_head(headers=many))
    assert status_of(response) == 431
    some = {f"X-Field-{n}": "1" for n in range(90)}
    ok, _ = exchange(server, request_head(headers=some))
    assert status_of(ok) == 200
    still_serving(server)


def test_a_64_mb_header_line_is_refused_early_and_costs_no_memory(server: Server) -> None:
    pid = worker(server)
    before = rss_mib(pid)
    head = b"GET /_test/hello HTTP/1.1\r\nHost: localhost\r\nX-Huge: "
    response, sent = exchange(server, head, [b"z" * (64 * MIB)])
    assert status_of(response) in (431, None)  # None: reset before the answer was read
    assert sent < 16 * MIB, f"the server read {sent / MIB:.0f} MiB of one header"
    assert rss_mib(pid) - before < 16, f"RSS grew from {before:.0f} to {rss_mib(pid):.0f} MiB"
    assert worker(server) == pid  # the same worker, still there
    still_serving(server)


def test_a_request_line_that_never_ends_is_answered_414_once_over(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"GET /")
        sent = 5
        while not select.select([client], [], [], 0.02)[0]:  # until the server answers
            client.sendall(b"a" * 500)
            sent += 500
            assert sent < 100_000, "no answer to an endless request line"
        assert status_of(client.recv(65536)) == 414
        assert sent < 4094 + 2000  # answered as soon as the line passed the limit


def test_a_declared_body_over_the_limit_is_answered_413_before_it_is_sent(
    server: Server,
) -> None:
    head = (
        b"POST /_test/echo HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 419430400\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(head)  # not a byte of the 400 MB body sent
        response = b""
        while not response.endswith(b"}"):  # the answer, before the connection closes
            response += client.recv(65536)
    assert status_of(response) == 413
    assert b"connection: close" in response.lower()
    assert b"REQUEST_MAX_BODY_SIZE=33554432 bytes (32 MiB)" in response
    still_serving(server)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_http_client_reads_the_413_of_a_body_over_the_limit(server: Server, framing) -> None:
    """Python's http.client writes the whole body before it reads a byte: it gets the
    413 only if the server reads the rest before it closes (else the kernel resets
    the connection and the client sees an error, not an answer)."""
    body = b"x" * (LIMIT + 16 * MIB)  # well over: the client still writes when it is refused
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"X-Forwarded-Proto": "https", "Content-Type": "application/octet-stream"}
    if framing == "chunked":
        parts = (body[i : i + MIB] for i in range(0, len(body), MIB))
        connection.request(
            "POST", "/_test/upload", body=parts, headers=headers, encode_chunked=True
        )
    else:
        connection.request("POST", "/_test/upload", body=body, headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413
    assert answer == {
        "error": "request body too large: over REQUEST_MAX_BODY_SIZE=33554432 bytes (32 MiB)"
    }
    assert "REQUEST_MAX_BODY_SIZE=33554432 bytes (32 MiB): POST /_test/upload" in server.log()
    still_serving(server)


SECURITY_HEADERS = (
    "strict-transport-security",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "x-frame-options",
)


def test_the_413_carries_the_security_headers_of_the_projects_responses(server: Server) -> None:
    page = server.get("/_test/hello")
    refused = httpx.post(
        server.url("/_test/upload"),
        content=b"x" * (LIMIT + 1),
        headers={"x-forwarded-proto": "https"},
        timeout=30,
    )
    assert refused.status_code == 413
    expected = {name: page.headers.get(name) for name in SECURITY_HEADERS}
    assert None not in expected.values(), expected  # the project sets every one of them
    assert {name: refused.headers.get(name) for name in SECURITY_HEADERS} == expected


def test_a_5_mb_multipart_upload_is_accepted_with_the_defaults(server: Server) -> None:
    photo = os.urandom(5 * 1000 * 1000)
    response = httpx.post(
        server.url("/_test/upload"),
        data={"title": "a photo"},
        files={"photo": ("photo.jpg", photo, "image/jpeg")},
        headers={"x-forwarded-proto": "https"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fields": {"title": "a photo"},
        "files": {"photo": {"size": len(photo), "sha256": hashlib.sha256(photo).hexdigest()}},
    }


def test_a_chunked_body_over_the_limit_is_answered_413_as_it_passes(server: Server) -> None:
    pid = worker(server)
    before = rss_mib(pid)
    head = (
        b"POST /_test/echo HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
        b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n" % 65536 + b"c" * 65536 + b"\r\n"
    response, _ = exchange(server, head, [chunk] * 6400)  # 400 MiB
    assert status_of(response) == 413  # answered; the rest was read and dropped
    assert not files_under_tmp(pid)  # none of it spooled
    assert rss_mib(pid) - before < 16
    still_serving(server)


def test_a_body_within_the_limit_is_served(server: Server) -> None:
    body = b"a=" + b"1" * 500_000
    head = (
        b"POST /_test/echo HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    response, _ = exchange(server, head, [body])
    assert status_of(response) == 200
    assert b'"bytes": 500002' in response


def test_many_requests_on_one_keepalive_connection_are_not_counted_as_one_head(
    server: Server,
) -> None:
    head = request_head(headers={f"X-Pad-{n}": "p" * 7000 for n in range(10)})  # 70 KB each
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        for _ in range(30):  # 2 MB of heads in all, far over one head's limit
            client.sendall(head)
            response = b""
            while b"\r\n\r\n" not in response:
                response += client.recv(65536)
            assert status_of(response) == 200
            length = int(response.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = response.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += client.recv(65536)


def test_gunicorns_own_settings_are_what_the_worker_enforces() -> None:
    """--limit-request-line in GUNICORN_CMD_ARGS wins, as Gunicorn users expect."""
    environ = {"GUNICORN_WORKERS": "1", "GUNICORN_CMD_ARGS": "--limit-request-line 200"}
    with Server(environ) as server:
        response, _ = exchange(server, request_head("/_test/hello?q=" + "x" * 300))
        assert status_of(response) == 414
        ok, _ = exchange(server, request_head("/_test/hello?q=" + "x" * 100))
        assert status_of(ok) == 200
