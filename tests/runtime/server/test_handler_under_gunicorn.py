"""Django's request path (server/handler.py, server/threads.py) under real Gunicorn.

Each request makes one visit to one thread: a synchronous view with its whole
middleware chain and both signals in one of GUNICORN_THREADS threads, an async
view on the event loop without taking one of them. Django's semantics hold.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import socket
import time
import uuid
from pathlib import Path

import django
import httpx
import pytest

from django_k8s_runtime.server.streaming import BUFFER_BYTES
from tests.support.server import Server

pytestmark = pytest.mark.series  # on every Django series and Python (make test-series)

THREADS = 3


@pytest.fixture(scope="module")
def server():
    environ = {
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": str(THREADS),
        "GUNICORN_TIMEOUT": "20",
        "REQUEST_MAX_BODY_SIZE": str(10 * 1024 * 1024),  # Django's own limits are tested
    }
    with Server(environ) as running:
        yield running


def new_id() -> str:
    return uuid.uuid4().hex


def signals_of(server: Server, request_id: str) -> dict:
    """request_started/request_finished as the worker counted them for one request.
    Polled briefly: a response can reach the client just before it is closed."""
    deadline = time.monotonic() + 5
    while True:
        record = server.get(f"/_test/signals?id={request_id}").json()
        if record.get("finished") or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def worker_threads(server: Server) -> int:
    (worker,) = server.workers()
    status = Path(f"/proc/{worker}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


# Synchronous views: one visit to one of GUNICORN_THREADS threads -------------------


@pytest.mark.slow
def test_a_sync_view_its_middleware_and_both_signals_run_in_one_thread(server: Server) -> None:
    request_id = new_id()
    response = server.get("/_test/where/sync", headers={"x-request-id": request_id})
    body = response.json()
    thread = body["thread"]
    assert thread.startswith("request-")
    assert body["request_started_in"] == thread
    assert response.headers["x-middleware-threads"] == f"{thread},{thread}"  # in and out
    assert signals_of(server, request_id) == {
        "started": 1,
        "finished": 1,
        "started_in": thread,
        "finished_in": thread,
    }


@pytest.mark.slow
def test_sync_views_share_a_fixed_pool_no_thread_per_request(server: Server) -> None:
    server.get("/_test/where/sync")
    before = worker_threads(server)
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        names = {
            response.json()["thread"]
            for response in pool.map(lambda _: server.get("/_test/where/sync"), range(120))
        }
    assert names <= {f"request-{n}" for n in range(1, THREADS + 1)}
    assert len(names) > 1  # the requests really were spread over the pool
    assert worker_threads(server) <= before


@pytest.mark.slow
def test_async_to_sync_in_a_sync_view_runs_on_the_workers_event_loop(server: Server) -> None:
    body = server.get("/_test/async-to-sync").json()
    assert body["view"]["thread"].startswith("request-")
    assert body["coroutine"]["main_thread"] is True


# Async views: on the event loop, never waiting for one of GUNICORN_THREADS ---------


@pytest.mark.slow
def test_an_async_view_runs_on_the_event_loop(server: Server) -> None:
    request_id = new_id()
    body = server.get("/_test/where/async", headers={"x-request-id": request_id}).json()
    assert body["main_thread"] is True
    middleware_thread = body["request_started_in"]
    assert middleware_thread.startswith("background-")  # not one of GUNICORN_THREADS
    assert signals_of(server, request_id)["finished"] == 1


@pytest.mark.slow
def test_many_async_views_wait_at_once_in_one_worker(server: Server) -> None:
    count = 20 * THREADS
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        statuses = list(
            pool.map(lambda _: server.get("/_test/async-sleep?s=1").status_code, range(count))
        )
    elapsed = time.monotonic() - started
    assert statuses == [200] * count
    # Capped by the thread pool it would take count / THREADS = 20 seconds; 60 clients
    # on a busy 2-core machine (make test-series runs this once per cell) take over 6.
    assert elapsed < 12, f"{count} one-second async views took {elapsed:.1f}s"


@pytest.mark.slow
def test_async_views_and_probes_answer_while_every_thread_is_busy(server: Server) -> None:
    with concurrent.futures.ThreadPoolExecutor(2 * THREADS) as pool:
        sleepers = [pool.submit(server.get, "/_test/sleep?s=3") for _ in range(2 * THREADS)]
        time.sleep(0.5)  # every thread is sleeping, and as many requests wait for one
        for path in ("/health/live", "/_test/where/async", "/health/live"):
            started = time.monotonic()
            assert server.get(path).status_code == 200
            assert time.monotonic() - started < 1.0, path  # not after the sleepers
        assert [sleeper.result().status_code for sleeper in sleepers] == [200] * (2 * THREADS)


@pytest.mark.slow
def test_a_client_that_leaves_gets_its_async_view_cancelled(server: Server) -> None:
    request_id = new_id()
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(
            f"GET /_test/cancellable-sleep?s=30 HTTP/1.1\r\nHost: localhost\r\n"
            f"X-Forwarded-Proto: https\r\nX-Request-ID: {request_id}\r\n\r\n".encode()
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 5
    while request_id not in server.get("/_test/cancelled").json()["cancelled"]:
        assert time.monotonic() < deadline, "the view was not cancelled"
        time.sleep(0.1)
    assert signals_of(server, request_id)["finished"] == 1


@pytest.mark.slow
def test_the_request_timeout_cancels_an_async_view() -> None:
    with Server({"GUNICORN_WORKERS": "1", "GUNICORN_TIMEOUT": "1"}) as server:
        request_id = new_id()
        started = time.monotonic()
        response = server.get("/_test/cancellable-sleep?s=30", headers={"x-request-id": request_id})
        assert response.status_code == 504
        assert time.monotonic() - started < 3
        assert request_id in server.get("/_test/cancelled").json()["cancelled"]
        assert signals_of(server, request_id)["finished"] == 1


# Django's semantics ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "status", "headers"),
    [
        ("/_test/hello", 200, {}),
        ("/_test/where/async", 200, {}),
        ("/nowhere", 404, {}),
        ("/_test/raise", 500, {}),
        ("/_test/hello", 400, {"host": "evil.example"}),  # DisallowedHost
        ("/_test/stream/sync?bytes=1000", 200, {}),
        (f"/_test/stream/sync?bytes={3 * BUFFER_BYTES}&chunk=65536", 200, {}),
        ("/_test/stream/async?bytes=300000&chunk=10000", 200, {}),
        (f"/_test/file?bytes={5 * BUFFER_BYTES}", 200, {}),
    ],
)
def test_request_started_and_finished_exactly_once(
    server: Server, path: str, status: int, headers: dict[str, str]
) -> None:
    request_id = new_id()
    response = server.get(path, headers={"x-request-id": request_id, **headers})
    assert response.status_code == status
    record = signals_of(server, request_id)
    assert (record["started"], record["finished"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "length"),
    [
        ("/_test/stream/sync?bytes=1000", 1000),
        (f"/_test/stream/sync?bytes={3 * BUFFER_BYTES + 7}&chunk=65536", 3 * BUFFER_BYTES + 7),
        ("/_test/stream/async?bytes=300001&chunk=10000", 300001),
        ("/_test/file?bytes=1000", 1000),
        (f"/_test/file?bytes={5 * BUFFER_BYTES + 3}", 5 * BUFFER_BYTES + 3),
    ],
)
def test_streaming_responses_arrive_whole(server: Server, path: str, length: int) -> None:
    response = server.get(path)
    assert response.status_code == 200
    assert len(response.content) == length
    if "/_test/file" in path:
        assert response.content == (bytes(range(256)) * (length // 256 + 1))[:length]
        assert response.headers["content-length"] == str(length)
    else:
        chunk = 65536 if "chunk=65536" in path else 10000 if "chunk=10000" in path else 1000
        expected = b"".join(
            bytes([65 + (start // chunk) % 26]) * min(chunk, length - start)
            for start in range(0, length, chunk)
        )
        assert response.content == expected


@pytest.mark.slow
def test_a_long_stream_stops_being_read_when_the_client_leaves(server: Server) -> None:
    key = new_id()
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(
            f"GET /_test/stream/sync?bytes={10**10}&chunk=65536&pause=0.001&key={key} HTTP/1.1\r\n"
            "Host: localhost\r\nX-Forwarded-Proto: https\r\n\r\n".encode()
        )
        received = 0
        while received < 4 * BUFFER_BYTES:
            received += len(client.recv(65536))
    deadline = time.monotonic() + 5
    while f"{key}:closed" not in (progress := server.get("/_test/stream/progress").json()):
        assert time.monotonic() < deadline, f"still streaming: {progress.get(key)} bytes read"
        time.sleep(0.1)
    assert progress[f"{key}:closed"] < 100 * BUFFER_BYTES


@pytest.mark.slow
def test_djangos_upload_limits_apply(server: Server) -> None:
    post = httpx.Client(timeout=30, headers={"x-forwarded-proto": "https"})
    small = post.post(server.url("/_test/echo"), data={"a": "1", "b": "2"})
    assert small.status_code == 200
    assert small.json()["fields"] == 2
    too_big = post.post(server.url("/_test/echo"), data={"a": "x" * (3 * 1024 * 1024)})
    assert too_big.status_code == 400  # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
    too_many = post.post(server.url("/_test/echo"), data={f"f{n}": "1" for n in range(1001)})
    assert too_many.status_code == 400  # DATA_UPLOAD_MAX_NUMBER_FIELDS (1000)
    assert server.get("/_test/hello").status_code == 200


# As the newest Django does it, on every series --------------------------------------


@pytest.mark.slow
def test_an_async_view_under_a_script_prefix_ending_in_a_slash_runs_as_one() -> None:
    """With FORCE_SCRIPT_NAME = "/app/", Django 6.1 serves /app/_test/where/async with
    the async view; it must then run as an async view does (on the event loop, its
    middleware in a background thread, cancelled when its client leaves), not in one of
    GUNICORN_THREADS."""
    environ = {
        "GUNICORN_WORKERS": "1",
        "DJANGO_SETTINGS_MODULE": "tests.site.settings_script_prefix",
    }
    with Server(environ) as server:
        response = server.get("/app/_test/where/async")
    if django.VERSION < (6, 1):
        # Django before 6.1 strips "/app/" whole: "_test/where/async" matches no URL.
        assert response.status_code == 404
        return
    assert response.status_code == 200
    body = response.json()
    assert body["main_thread"] is True
    assert body["request_started_in"].startswith("background-")


@pytest.mark.slow
@pytest.mark.parametrize("respond", ["json", "async-stream"])
def test_the_body_file_is_closed_when_the_request_is_done(server: Server, respond: str) -> None:
    """As Django's own handler closes it: also when the view replaced the stream the
    body is read from (here with its decompressed bytes), so that closing the request
    no longer closes it."""
    request_id = new_id()
    response = httpx.post(
        server.url(f"/_test/gzip-body?respond={respond}"),
        content=gzip.compress(b"x" * 5000),
        headers={"x-forwarded-proto": "https", "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.text in ('{"bytes": 5000}', "5000")
    deadline = time.monotonic() + 5
    while not server.get(f"/_test/gzip-body?id={request_id}").json()["closed"]:
        assert time.monotonic() < deadline, "the body file is still open"
        time.sleep(0.05)


# Streams and the request timeout ---------------------------------------------------------


@pytest.fixture(scope="module")
def short_timeout():
    with Server({"GUNICORN_WORKERS": "1", "GUNICORN_TIMEOUT": "2"}) as running:
        yield running


def access_line(server: Server, request_id: str) -> dict:
    import json

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in server.log_lines():
            if (
                f'"request_id": "{request_id}"' in line
                and '"logger": "django_k8s_runtime.access"' in line
            ):
                return json.loads(line)
        time.sleep(0.1)
    raise AssertionError(f"no access line for {request_id}:\n{server.log()}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    ["/_test/stream/sync?bytes=8&chunk=1&pause=0.5", "/_test/stream/queries?events=8&pause=0.5"],
    ids=["sync", "async"],
)
def test_a_stream_that_keeps_producing_outlives_the_request_timeout(
    short_timeout: Server, path: str
) -> None:
    """Eight parts half a second apart with GUNICORN_TIMEOUT=2: four seconds of a stream
    that never goes quiet for the timeout, served whole (server-sent events)."""
    request_id = new_id()
    started = time.monotonic()
    response = short_timeout.get(path, headers={"x-request-id": request_id}, timeout=30)
    assert response.status_code == 200
    assert len(response.content) in (8, len(b"data: 0\n\n") * 8)
    assert time.monotonic() - started >= 3.5
    line = access_line(short_timeout, request_id)
    assert (line["status"], line.get("ended")) == (200, None), line


@pytest.mark.slow
def test_a_stream_quiet_for_the_timeout_is_cut_and_recorded_with_its_200(
    short_timeout: Server,
) -> None:
    """The head goes out at once; the first part would come after five seconds: the
    stream is cut after two (GUNICORN_TIMEOUT) and recorded as sent, 200, stalled."""
    request_id = new_id()
    path = "/_test/stream/sync?bytes=2&chunk=1&pause=5"
    headers = {"x-request-id": request_id, "x-forwarded-proto": "https"}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", short_timeout.url(path), headers=headers) as r,
    ):
        head_at = time.monotonic()
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ends
            r.read()
        cut_after = time.monotonic() - head_at
    assert 1.5 < cut_after < 5, cut_after
    line = access_line(short_timeout, request_id)
    assert (line["status"], line.get("ended")) == (200, "stalled"), line
    log = short_timeout.log()
    assert "response stalled: nothing sent for the 2s timeout, cut" in log
    assert "ASGI callable returned without completing response" not in log  # said once
