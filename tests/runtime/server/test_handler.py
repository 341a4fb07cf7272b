"""Django's request path (server/handler.py, server/threads.py) in this process:
the real DjangoApplication and its thread pools, the test site's views, and Uvicorn's
part played by tests/support/asgi.py. The same path under real Gunicorn is in
test_handler_under_gunicorn.py."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpResponse, HttpResponseBase

from django_k8s_runtime.server.handler import OneHopHandler, is_for_async_view
from django_k8s_runtime.server.threads import ThreadPool

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


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
