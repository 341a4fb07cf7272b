"""Django's request path (server/handler.py, server/threads.py) in this process:
the real DjangoApplication and its thread pools, the test site's views, and Uvicorn's
part played by tests/support/asgi.py. The same path under real Gunicorn is in
test_handler_under_gunicorn.py."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.core.signals import request_finished, request_started
from django.http import FileResponse, HttpResponse, HttpResponseBase

from django_k8s_runtime.server.handler import DjangoApplication, OneHopHandler
from django_k8s_runtime.server.routes import is_for_async_view
from django_k8s_runtime.server.streaming import BUFFER_BYTES
from django_k8s_runtime.server.threads import ThreadPool
from django_k8s_runtime.server.timeout import RequestTimeout
from tests.site import views
from tests.support.asgi import Client, http_scope, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


@contextlib.asynccontextmanager
async def django_application(
    threads: int = 2, max_requests: int | None = None
) -> AsyncIterator[DjangoApplication]:
    """The real DjangoApplication with pools of its own, as a worker makes them."""
    requests, background = ThreadPool(threads, "request"), ThreadPool(None, "background")
    try:
        yield DjangoApplication(
            threads=lambda: requests,
            background_threads=lambda: background,
            max_requests=lambda: max_requests,
        )
    finally:
        # A view still running in a thread (past its deadline, say) hands its result
        # to this loop: let it, before the loop closes.
        for _ in range(250):
            if not (requests.busy or background.busy):
                break
            await asyncio.sleep(0.02)
        requests.shutdown()
        background.shutdown()


def https_client(app) -> httpx.AsyncClient:
    """httpx talking to ``app`` in this process over https (the settings assume it)."""
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 51000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


def get(path: str, **options) -> httpx.Response:
    async def scenario() -> httpx.Response:
        async with django_application(**options) as app, https_client(app) as client:
            return await client.get(path)

    return run(scenario())


@pytest.fixture
def signals():
    """Each request_started and request_finished, with the thread that sent it."""
    sent: list[tuple[str, str]] = []

    def started(**kwargs) -> None:
        sent.append(("started", threading.current_thread().name))

    def finished(**kwargs) -> None:
        sent.append(("finished", threading.current_thread().name))

    request_started.connect(started, dispatch_uid="test_handler.started")
    request_finished.connect(finished, dispatch_uid="test_handler.finished")
    yield sent
    request_started.disconnect(dispatch_uid="test_handler.started")
    request_finished.disconnect(dispatch_uid="test_handler.finished")


def https_scope(path: str) -> dict:
    bare, _, query = path.partition("?")
    scope = http_scope(bare, query=query.encode(), headers=[(b"host", b"testserver")])
    return {**scope, "scheme": "https"}


# One visit to one thread --------------------------------------------------------------


def test_a_sync_view_its_middleware_and_both_signals_run_in_one_pool_thread(signals) -> None:
    response = get("/_test/where/sync")
    assert response.status_code == 200
    thread = response.json()["thread"]
    assert thread.startswith("request-")
    assert response.json()["request_started_in"] == thread
    assert response.headers["x-middleware-threads"] == f"{thread},{thread}"
    assert signals == [("started", thread), ("finished", thread)]


def test_an_async_view_runs_on_the_loop_its_middleware_in_a_background_thread(signals) -> None:
    response = get("/_test/where/async")
    body = response.json()
    assert body["main_thread"] is True  # the event loop's thread
    middleware = response.headers["x-middleware-threads"].split(",")
    assert middleware[0] == middleware[1] == body["request_started_in"]
    assert middleware[0].startswith("background-")  # not one of the request threads
    assert signals == [("started", middleware[0]), ("finished", middleware[0])]


@pytest.mark.parametrize(
    ("path", "length"),
    [
        ("/_test/stream/sync?bytes=1000", 1000),
        (f"/_test/stream/sync?bytes={3 * BUFFER_BYTES + 7}&chunk=65536", 3 * BUFFER_BYTES + 7),
        ("/_test/stream/async?bytes=300001&chunk=10000", 300001),
        ("/_test/file?bytes=1000", 1000),
        (f"/_test/file?bytes={3 * BUFFER_BYTES + 7}", 3 * BUFFER_BYTES + 7),
    ],
    ids=["short stream", "long stream", "async stream", "small file", "large file"],
)
def test_a_streamed_response_arrives_whole_and_signals_once(
    signals, path: str, length: int
) -> None:
    response = get(path)
    assert len(response.content) == length
    if "file" in path:
        assert response.content[:256] == bytes(range(256))
    assert [kind for kind, _ in signals] == ["started", "finished"]


# A client that leaves -----------------------------------------------------------------


def test_a_client_that_leaves_has_its_async_view_cancelled(signals) -> None:
    cancelled_before = len(views._cancelled_views)

    async def scenario() -> Client:
        client = Client()
        async with django_application() as app:
            request = asyncio.ensure_future(
                app(https_scope("/_test/cancellable-sleep?s=30"), client.receive, client.send)
            )
            await asyncio.sleep(0.2)
            client.disconnect()
            await asyncio.wait_for(request, 5)  # not the 30 s the view would sleep
        return client

    client = run(scenario())
    assert client.sent == []  # nothing was answered
    assert len(views._cancelled_views) == cancelled_before + 1
    assert [kind for kind, _ in signals] == ["started", "finished"]


class StopsReading(Client):
    """A client that takes a few parts of a response and then none: its sends wait,
    as a server's do once the client's window is full."""

    async def send(self, message) -> None:
        if len(self.sent) >= 4:
            await asyncio.Event().wait()  # until cancelled
        await super().send(message)


def test_a_long_stream_stops_being_read_when_the_client_leaves(signals) -> None:
    """The view's thread, waiting for the client to take a part, is let go when the
    client leaves; it reads no further and closes the response."""
    key = uuid.uuid4().hex
    endless = f"/_test/stream/sync?bytes={10**10}&chunk=65536&key={key}"

    async def scenario() -> None:
        client = StopsReading()
        async with django_application() as app:
            request = asyncio.ensure_future(app(https_scope(endless), client.receive, client.send))
            await asyncio.sleep(0.2)
            client.disconnect()
            await asyncio.wait_for(request, 5)
            for _ in range(100):  # the thread closes the response on its way out
                if f"{key}:closed" in views._stream_progress:
                    break
                await asyncio.sleep(0.02)

    run(scenario())
    assert views._stream_progress[f"{key}:closed"] <= 3 * BUFFER_BYTES
    assert [kind for kind, _ in signals] == ["started", "finished"]


# A worker that is full ----------------------------------------------------------------


def test_a_request_beyond_the_workers_requests_is_answered_503_at_once() -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with django_application(max_requests=1) as app, https_client(app) as client:
            holding = asyncio.ensure_future(client.get("/_test/async-sleep?s=0.3"))
            await asyncio.sleep(0.1)
            refused = await asyncio.wait_for(client.get("/_test/where/sync"), 0.2)
            return await holding, refused

    held, refused = run(scenario())
    assert held.status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert json.loads(refused.content) == {"error": "server busy, retry"}


def test_a_request_that_gets_no_thread_within_its_share_of_the_deadline_is_answered_503() -> None:
    """Admitted (the queue looked short), it waited half its time for the one thread,
    busy with a view past its own deadline, and was withdrawn: a quick 503 the load
    balancer can retry elsewhere, not a 504 after the whole timeout."""

    async def scenario() -> tuple[httpx.Response, httpx.Response, float]:
        async with django_application(threads=1) as django:
            app = RequestTimeout(django, seconds=lambda: 0.4, grace=0.05)
            async with https_client(app) as client:
                busy = asyncio.ensure_future(client.get("/_test/sleep?s=0.8"))
                await asyncio.sleep(0.1)
                started = asyncio.get_running_loop().time()
                waiting = await client.get("/_test/where/sync")
                waited = asyncio.get_running_loop().time() - started
                return await busy, waiting, waited

    busy, waiting, waited = run(scenario())
    assert busy.status_code == 504
    assert waiting.status_code == 503
    assert waited < 0.4  # before its own deadline


# As the newest Django does it, on every series --------------------------------------


@pytest.mark.parametrize(
    ("root_path", "path", "for_async_view"),
    [
        ("", "/_test/where/async", True),
        ("", "/_test/where/sync", False),
        ("/app", "/app/_test/where/async", True),
        ("/app", "/app/_test/where/sync", False),
        # Django 6.1 strips the prefix at a "/" boundary: "/app/" leaves "/_test/...".
        ("/app/", "/app/_test/where/async", True),
        ("/app/", "/app/_test/where/sync", False),
        ("/app", "/application/_test/where/async", False),  # not under the prefix
    ],
)
def test_the_script_prefix_is_stripped_as_django_6_1_strips_it(
    root_path: str, path: str, for_async_view: bool
) -> None:
    scope = {"type": "http", "path": path, "root_path": root_path}
    assert is_for_async_view(scope) is for_async_view


def test_set_cookie_is_built_as_django_6_builds_it() -> None:
    """Django 6.0 sends ``Morsel.OutputString()``; 5.2's ``output(header="").strip()``
    also cut whitespace off the end of the last attribute's value."""
    response = HttpResponse()
    response.set_cookie("theme", "dark", path="/shop ")
    response.set_cookie("sessionid", "abc", max_age=60, httponly=True, samesite="Lax")
    headers = OneHopHandler.response_start(response)["headers"]
    cookies = [value for name, value in headers if name == b"Set-Cookie"]
    assert cookies == [
        b"theme=dark; Path=/shop ",
        response.cookies["sessionid"].OutputString().encode("ascii"),
    ]
    assert cookies[1].startswith(b"sessionid=abc; expires=")
    assert cookies[1].endswith(b"; HttpOnly; Max-Age=60; Path=/; SameSite=Lax")


# The internals this reaches into: a failure here means Django or asgiref changed ----


def test_the_django_internals_the_handler_uses_are_still_there() -> None:
    def parameters(function: object) -> list[str]:
        return list(inspect.signature(function).parameters)  # type: ignore[arg-type]

    assert inspect.iscoroutinefunction(ASGIHandler.read_body)
    assert parameters(ASGIHandler.read_body) == ["self", "receive"]
    assert parameters(ASGIHandler.create_request) == ["self", "scope", "body_file"]
    assert parameters(ASGIHandler.chunk_bytes) == ["data"]
    assert parameters(BaseHandler.load_middleware) == ["self", "is_async"]
    assert parameters(BaseHandler.get_response) == ["self", "request"]
    closing = inspect.getsource(HttpResponseBase.close)
    assert "self._handler_class" in closing
    # The body file is closed with the response; FileParts detaches a file's close
    # from its response (server/handler.py).
    assert "for closer in self._resource_closers:" in closing
    assert "self._resource_closers.append(filelike.close)" in inspect.getsource(
        FileResponse._set_streaming_content
    )


def test_asgiref_runs_async_to_sync_on_the_loop_its_threadlocal_names() -> None:
    """What server/threads.py and server/handler.py rely on, with a real loop and pool."""
    seen: dict[str, object] = {}

    async def coroutine() -> str:
        seen["task_listed"] = asyncio.current_task() in view_tasks
        return threading.current_thread().name

    def in_a_pool_thread() -> str:
        SyncToAsync.threadlocal.task_context = view_tasks
        try:
            return async_to_sync(coroutine)()
        finally:
            SyncToAsync.threadlocal.task_context = None

    async def main() -> str:
        return await ThreadPool(1, "test").run(in_a_pool_thread)

    view_tasks: list[asyncio.Task[object]] = []
    assert asyncio.run(main()) == threading.main_thread().name
    assert seen["task_listed"] is True
    assert view_tasks == []


# Django's semantics, as its own handler has them ------------------------------------


@pytest.fixture
def asgi_handler_signals():
    """request_started and request_finished as a receiver connected with
    ``sender=ASGIHandler`` sees them (code written for Django's handler): with the
    thread that sent each."""
    sent: list[tuple[str, str]] = []

    def started(**kwargs) -> None:
        sent.append(("started", threading.current_thread().name))

    def finished(**kwargs) -> None:
        sent.append(("finished", threading.current_thread().name))

    request_started.connect(started, sender=ASGIHandler, dispatch_uid="asgi.started")
    request_finished.connect(finished, sender=ASGIHandler, dispatch_uid="asgi.finished")
    yield sent
    request_started.disconnect(sender=ASGIHandler, dispatch_uid="asgi.started")
    request_finished.disconnect(sender=ASGIHandler, dispatch_uid="asgi.finished")


@pytest.mark.parametrize("path", ["/_test/where/sync", "/_test/where/async"])
def test_the_signals_are_sent_by_asgi_handler_as_django_sends_them(
    asgi_handler_signals, path: str
) -> None:
    """A receiver connected with ``sender=ASGIHandler`` fires, once each, off the loop."""
    assert get(path).status_code == 200
    assert [kind for kind, _ in asgi_handler_signals] == ["started", "finished"]
    assert threading.main_thread().name not in {name for _, name in asgi_handler_signals}


def test_a_request_that_cannot_be_made_is_answered_and_finished_once(
    asgi_handler_signals,
) -> None:
    """Django's test_request_too_big_request_error: the request object cannot be made
    (here, a query string that is not UTF-8), the client gets Django's answer for it,
    and request_finished is sent once, in the request's thread."""

    async def scenario() -> Client:
        client = Client()
        scope = {**https_scope("/_test/where/sync"), "query_string": b"\xff"}
        async with django_application() as app:
            await asyncio.wait_for(app(scope, client.receive, client.send), 5)
        return client

    client = run(scenario())
    assert client.status == 400
    assert [kind for kind, _ in asgi_handler_signals] == ["started", "finished"]
    assert asgi_handler_signals[1][1].startswith("request-")


def test_a_sync_view_reads_its_body_after_its_client_left() -> None:
    """Django's test_cancel_post_request_with_sync_processing: a synchronous view runs
    to its end when its client leaves meanwhile, its body still there to read."""

    async def scenario() -> Client:
        client = PostsThenLeaves(b"a=1&b=2")
        async with django_application() as app:
            scope = {**https_scope("/_test/echo?pause=0.2"), "method": "POST"}
            scope["headers"] = [
                *scope["headers"],
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", b"7"),
            ]
            request = asyncio.ensure_future(app(scope, client.receive, client.send))
            await asyncio.sleep(0.05)
            client.disconnect()
            await asyncio.wait_for(request, 5)
        return client

    client = run(scenario())
    assert views._echoed[-1] == {"fields": 2, "bytes": 7}  # read after the client left
    assert client.sent == []  # and, as under Django's handler, no response sent


class PostsThenLeaves(Client):
    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    async def receive(self):
        if not self._request_delivered:
            self._request_delivered = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}


def test_an_async_view_is_cancelled_when_its_client_leaves_and_finished_once(
    asgi_handler_signals,
) -> None:
    """Django's test_asyncio_cancel_error: cancelled, nothing sent, request_finished
    once, sent by ASGIHandler off the event loop."""
    cancelled_before = len(views._cancelled_views)

    async def scenario() -> Client:
        client = Client()
        async with django_application() as app:
            request = asyncio.ensure_future(
                app(https_scope("/_test/cancellable-sleep?s=30"), client.receive, client.send)
            )
            await asyncio.sleep(0.2)
            client.disconnect()
            await asyncio.wait_for(request, 5)
        return client

    client = run(scenario())
    assert client.sent == []
    assert len(views._cancelled_views) == cancelled_before + 1
    assert [kind for kind, _ in asgi_handler_signals] == ["started", "finished"]
    assert asgi_handler_signals[1][1] != threading.main_thread().name


@pytest.mark.django_db(transaction=True)
def test_an_async_stream_is_cancelled_when_its_client_leaves_and_finished_once(
    asgi_handler_signals,
) -> None:
    """Django's test_asyncio_streaming_cancel_error and test_streaming_disconnect: the
    stream's iterator is cancelled at once when its client leaves (not run to its end
    or to the timeout), nothing more is sent, request_finished is sent once, and the
    connection its queries used is given back by the thread that holds it."""
    key = uuid.uuid4().hex

    async def scenario() -> Client:
        client = Client()
        async with django_application() as app:
            path = f"/_test/stream/queries?key={key}&events=1000&pause=0.05"
            request = asyncio.ensure_future(app(https_scope(path), client.receive, client.send))
            for _ in range(100):
                if len(client.sent) >= 3:  # the head and two events
                    break
                await asyncio.sleep(0.02)
            client.disconnect()
            sent_then = len(client.sent)
            await asyncio.wait_for(request, 5)
            await asyncio.sleep(0.2)  # a stream still running would send on
            assert len(client.sent) <= sent_then + 1
        return client

    client = run(scenario())
    assert client.status == 200
    assert key in views._stream_cancelled
    assert [kind for kind, _ in asgi_handler_signals] == ["started", "finished"]
    # Every query ran in the thread that ended the request (which gives its
    # connections back; tests/runtime/server/test_connections_under_gunicorn.py
    # shows it on PostgreSQL's pool).
    assert views._query_threads[key] == {asgi_handler_signals[1][1]}


@pytest.mark.django_db(transaction=True)
def test_an_async_stream_that_used_the_database_gives_its_connection_back(signals) -> None:
    """The SSE pattern: an async view queries, then streams events that query. Every
    query runs in the request's thread, and that thread ends the request, so the
    connection goes back from where it was taken."""
    key = uuid.uuid4().hex
    response = get(f"/_test/stream/queries?key={key}&events=3&pause=0")
    assert response.status_code == 200
    assert response.content == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    started_in, finished_in = (name for _, name in signals)
    assert views._query_threads[key] == {started_in} == {finished_in}


class Timed(Client):
    """A client that notes when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    async def send(self, message) -> None:
        self.arrived.append(asyncio.get_running_loop().time())
        await super().send(message)


def test_a_sync_stream_sends_its_head_at_once_and_each_part_as_it_is_made() -> None:
    """A synchronous generator of three parts 0.3 s apart: the head and the first part
    arrive at once, not when the generator ends (server-sent events from a sync view)."""

    async def scenario() -> tuple[Timed, float]:
        client = Timed()
        async with django_application() as app:
            started = asyncio.get_running_loop().time()
            path = "/_test/stream/sync?bytes=3&chunk=1&pause=0.3"
            await asyncio.wait_for(app(https_scope(path), client.receive, client.send), 10)
        return client, started

    client, started = run(scenario())
    assert client.body == b"ABC"
    assert client.arrived[0] - started < 0.25  # the head, before the first pause ends
    assert client.arrived[-1] - started >= 0.6


def test_the_application_serves_requests_from_one_event_loop_after_another() -> None:
    """One application, its pools made once, used from a second loop (a test suite's
    one loop per test): requests on the second are answered, not posted to the first."""
    requests, background = ThreadPool(2, "request"), ThreadPool(None, "background")
    app = DjangoApplication(threads=lambda: requests, background_threads=lambda: background)

    async def one(path: str) -> int:
        async with https_client(app) as client:
            return (await asyncio.wait_for(client.get(path), 10)).status_code

    try:
        for _ in range(2):  # a loop each
            assert run(one("/_test/where/sync")) == 200
            assert run(one("/_test/where/async")) == 200
    finally:
        requests.shutdown()
        background.shutdown()


def test_a_request_whose_client_left_while_it_waited_for_a_thread_never_runs() -> None:
    """The one thread is busy; a request queues for it, and its client leaves: it is
    withdrawn from the queue at once, and its view never runs."""
    key = uuid.uuid4().hex

    async def scenario() -> tuple[int, int]:
        client = Client()
        async with django_application(threads=1) as app, https_client(app) as http:
            busy = asyncio.ensure_future(http.get("/_test/sleep?s=0.6"))
            await asyncio.sleep(0.1)
            queued = asyncio.ensure_future(
                app(https_scope(f"/_test/note-ran?key={key}"), client.receive, client.send)
            )
            await asyncio.sleep(0.2)
            client.disconnect()
            await asyncio.wait_for(queued, 5)
            waiting_after = app.threads().waiting
            await busy
            await asyncio.sleep(0.1)  # the thread is free: a request left in the queue runs
            return waiting_after, len(client.sent)

    waiting_after, sent = run(scenario())
    assert key not in views._ran
    assert (waiting_after, sent) == (0, 0)


@pytest.mark.parametrize("server_marks_the_scope", [False, True], ids=["watched", "marked"])
def test_a_request_whose_client_left_before_its_view_started_never_runs(
    server_marks_the_scope: bool,
) -> None:
    """Django's test_disconnect_with_body: the body and the disconnect are both there
    before the view could start (told by receive(), or by the runtime's protocol in
    the scope): no view, nothing sent."""
    key = uuid.uuid4().hex

    async def scenario() -> Client:
        client = Client()
        client.disconnect()  # after the body: the client is gone
        scope = https_scope(f"/_test/note-ran?key={key}")
        if server_marks_the_scope:
            scope["client_gone"] = True
        async with django_application() as app:
            await asyncio.wait_for(app(scope, client.receive, client.send), 5)
        return client

    client = run(scenario())
    assert client.sent == []
    assert key not in views._ran
