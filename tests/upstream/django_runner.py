"""Django's own tests, run against an ASGI application: the runtime's, or Django's.

Django's ``runtests.py`` runs its suites with these settings; this runner then
serves every request those suites make through the application ``UPSTREAM_SERVE``
names: ``runtime`` (``django_k8s_runtime.asgi.get_asgi_application()``, the whole
stack, Django in one visit to a thread per request) or ``django`` (Django's own
``ASGIHandler``, the oracle):

* ``django.core.asgi.get_asgi_application()`` (what ``tests/asgi`` calls) returns
  that application;
* the test client (``self.client``, ``self.async_client``, what ``tests/handlers``
  uses) hands each request to it as an ASGI server would, instead of calling
  ``BaseHandler.get_response`` itself. The request object the application made is
  attached to the response, as the client attaches its own.

Run both ways, the two must agree test for test, except where ``divergences.toml``
says why (``test_django.py`` compares them): what fails under Django's own ASGI
handler too (the test client's WSGI habits) is no divergence of the runtime's. A
test that builds Django's ``ASGIHandler`` (or ``WSGIHandler``) itself tests Django,
whichever application is served: it is left out, as ``divergences.toml`` says, and
its intent is in the runtime's own tests. Every outcome is written as JSON to the
file ``UPSTREAM_RESULTS`` names.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
import traceback
import unittest
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import django.core.asgi
import django.test.client
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.test.runner import DiscoverRunner

DIVERGENCES = Path(__file__).with_name("divergences.toml")


_django_application = django.core.asgi.get_asgi_application


def served_application() -> Any:
    if os.environ.get("UPSTREAM_SERVE") == "django":
        return _django_application()
    from django_k8s_runtime.asgi import get_asgi_application

    return get_asgi_application()


class TestClientRequest(ASGIRequest):
    """Django's ASGI request, as the runtime makes it, with what the test client
    sets on its own: the CSRF exemption, and the request kept for the response."""

    def __init__(self, scope: dict[str, Any], body_file: Any) -> None:
        super().__init__(scope, body_file)
        self._dont_enforce_csrf_checks = scope.get("_dont_enforce_csrf_checks", False)
        scope["_request"] = self


class ThroughTheRuntime:
    """The test client's handler: each request served by the runtime's application,
    which is made once per client (a test's settings are in place by then)."""

    def __init__(self, enforce_csrf_checks: bool = True, *args: Any, **kwargs: Any) -> None:
        self.enforce_csrf_checks = enforce_csrf_checks
        self._application: Any = None

    async def serve(self, scope: dict[str, Any], body: bytes, *, asynchronous: bool) -> Any:
        if self._application is None:
            self._application = served_application()
        scope["_dont_enforce_csrf_checks"] = not self.enforce_csrf_checks
        messages: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.get_running_loop().create_future()  # the client never leaves
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await self._application(scope, receive, send)
        return _response(messages, scope.get("_request"), asynchronous=asynchronous)


class SyncClientHandler(ThroughTheRuntime):
    """For ``Client``: the WSGI environ it builds, served over ASGI."""

    def __call__(self, environ: dict[str, Any]) -> Any:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return async_to_sync(self.serve)(_scope(environ), body, asynchronous=False)


class AsyncClientHandler(ThroughTheRuntime):
    """For ``AsyncClient``: the ASGI scope it builds, its body file read first."""

    async def __call__(self, scope: dict[str, Any]) -> Any:
        body_file = scope.pop("_body_file", None)
        body = body_file.read(len(body_file)) if body_file is not None else b""
        return await self.serve(scope, body, asynchronous=True)


def _scope(environ: dict[str, Any]) -> dict[str, Any]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        headers.append((name.replace("_", "-").lower().encode("latin1"), str(value).encode()))
    path = environ["PATH_INFO"].encode("latin1").decode("utf-8", "replace")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": environ["REQUEST_METHOD"],
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": path,
        "raw_path": environ["PATH_INFO"].encode("latin1"),
        "root_path": environ.get("SCRIPT_NAME", ""),
        "query_string": environ.get("QUERY_STRING", "").encode("latin1"),
        "headers": headers,
        "client": (environ.get("REMOTE_ADDR", "127.0.0.1"), 0),
        "server": (environ.get("SERVER_NAME", "testserver"), int(environ.get("SERVER_PORT", 80))),
    }


def _response(messages: list[dict[str, Any]], request: Any, *, asynchronous: bool) -> Any:
    """The response the messages make: a streaming one (over an iterator of the
    client's kind) where the application sent the body in parts."""
    start = next(m for m in messages if m["type"] == "http.response.start")
    parts = [m.get("body", b"") for m in messages if m["type"] == "http.response.body"]
    if len(parts) > 1:
        response = StreamingHttpResponse(_async_parts(parts) if asynchronous else iter(parts))
        response.status_code = start["status"]
    else:
        response = HttpResponse(b"".join(parts), status=start["status"])
    for name in list(response.headers):
        del response.headers[name]
    for name, value in start["headers"]:
        if name.lower() == b"set-cookie":
            response.cookies.update(SimpleCookie(value.decode("latin1")))
        else:
            response.headers[name.decode("latin1")] = value.decode("latin1")
    response.wsgi_request = response.asgi_request = request
    return response


async def _async_parts(parts: list[bytes]) -> Any:
    for part in parts:
        yield part


def _divergences() -> dict[str, dict[str, str]]:
    return tomllib.loads(DIVERGENCES.read_text())["django"]


class Runner(DiscoverRunner):
    """Django's runner, serving through the runtime, recording every outcome."""

    def setup_test_environment(self, **kwargs: Any) -> None:
        super().setup_test_environment(**kwargs)
        from django.core.handlers.asgi import ASGIHandler

        from django_k8s_runtime.server.handler import OneHopHandler

        django.core.asgi.get_asgi_application = served_application
        django.test.client.ClientHandler = SyncClientHandler
        django.test.client.AsyncClientHandler = AsyncClientHandler
        # The request class both applications make (the runtime's handler is an
        # ASGIHandler; a test's own ASGIHandler subclass keeps the class it names).
        ASGIHandler.request_class = OneHopHandler.request_class = TestClientRequest

    def build_suite(self, *args: Any, **kwargs: Any) -> unittest.TestSuite:
        suite = super().build_suite(*args, **kwargs)
        left_out = {
            test_id: entry["why"]
            for test_id, entry in _divergences().items()
            if entry["kind"] == "not-applicable"
        }
        kept = unittest.TestSuite()
        self.left_out: dict[str, str] = {}
        for test in _tests(suite):
            if test.id() in left_out:
                self.left_out[test.id()] = left_out[test.id()]
            else:
                kept.addTest(test)
        return kept

    def get_resultclass(self) -> type[unittest.TestResult]:
        return RecordingResult

    def run_suite(self, suite: unittest.TestSuite, **kwargs: Any) -> unittest.TestResult:
        result = super().run_suite(suite, **kwargs)
        outcomes = getattr(result, "outcomes", {})
        for test_id, why in self.left_out.items():
            outcomes[test_id] = {"outcome": "left out", "detail": why}
        Path(os.environ["UPSTREAM_RESULTS"]).write_text(json.dumps(outcomes, indent=1))
        return result


def _tests(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    found = []
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            found.extend(_tests(test))
        else:
            found.append(test)
    return found


class RecordingResult(unittest.TextTestResult):
    """Each test's outcome by its id (a subtest's failure counts for its test)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, dict[str, str]] = {}

    def _note(self, test: Any, outcome: str, error: Any = None) -> None:
        test_id = getattr(test, "test_case", test).id()
        detail = "".join(traceback.format_exception(*error))[-2000:] if error else ""
        if self.outcomes.get(test_id, {}).get("outcome") in ("failed", "error"):
            return  # a subtest failed already: the test failed
        self.outcomes[test_id] = {"outcome": outcome, "detail": detail}

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._note(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._note(test, "failed", err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._note(test, "error", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._note(test, "skipped", None)
        self.outcomes[test.id()]["detail"] = reason

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._note(test, "failed", err)
        elif test.id() not in self.outcomes:
            self.outcomes[test.id()] = {"outcome": "passed", "detail": ""}
