"""RequestObserver in-process: the request id, the access-log line and the metrics.

The metrics are prometheus_client's own, on a registry of the test's (not the
multiprocess files a server writes; test_metrics.py scrapes
those from a real server).
"""

from __future__ import annotations

import contextlib
import logging

import pytest
from prometheus_client import CollectorRegistry

from django_k8s_runtime.observability.logconfig import RequestContextFilter
from django_k8s_runtime.observability.metrics import Metrics
from django_k8s_runtime.observability.observer import RequestObserver
from django_k8s_runtime.observability.request_id import current_request_id
from tests.support.asgi import client, hello, respond, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


def routed(route: str | None, status: int = 200):
    """An application that records its route, as the probes and record_route do."""

    async def app(scope, receive, send) -> None:
        if route is not None:
            scope["route"] = route
        await respond(send, status, b"answer")

    return app


def request(app, path: str = "/", method: str = "GET", **headers: str):
    async def scenario():
        async with client(app) as http:
            return await http.request(method, path, headers=headers)

    return run(scenario())


def access_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "django_k8s_runtime.access"]


@pytest.fixture
def metrics() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry), registry


def test_a_well_formed_request_id_is_kept_and_returned(caplog) -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(current_request_id())
        await hello(scope, receive, send)

    caplog.handler.addFilter(RequestContextFilter())  # as the console handler has
    with caplog.at_level(logging.INFO):
        response = request(RequestObserver(app, access_log=True), **{"x-request-id": "abc-12345"})
    assert response.headers["x-request-id"] == "abc-12345"
    assert seen == ["abc-12345"]  # bound while the application runs...
    assert current_request_id() is None  # ...and not after
    (line,) = access_lines(caplog)
    assert line.request_id == "abc-12345"  # the access line is written while it is bound


@pytest.mark.parametrize("incoming", [None, "x", "bad id with spaces"])
def test_a_missing_or_malformed_request_id_is_replaced(incoming: str | None) -> None:
    headers = {"x-request-id": incoming} if incoming else {}
    response = request(RequestObserver(hello, access_log=False), **headers)
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-request-id"] != incoming


def test_one_access_line_per_request_with_its_fields(caplog) -> None:
    with caplog.at_level(logging.INFO):
        request(RequestObserver(routed("/items", 201), access_log=True), "/items?page=2")
    (line,) = access_lines(caplog)
    assert line.getMessage().startswith('10.0.0.9 "GET /items?page=2" 201 ')
    assert (line.method, line.path, line.status, line.client) == (
        "GET",
        "/items?page=2",
        201,
        "10.0.0.9",
    )
    assert line.duration_ms >= 0


def test_quiet_routes_stay_out_of_the_access_log_and_others_do_not(caplog) -> None:
    quiet = {"/health", "/health/live"}
    with caplog.at_level(logging.INFO):
        request(RequestObserver(routed("/health"), access_log=True, quiet_routes=quiet))
        request(RequestObserver(routed("/_test/hello"), access_log=True, quiet_routes=quiet))
        request(RequestObserver(routed("/health"), access_log=True))  # LOG_PROBES=true
    assert [line.path for line in access_lines(caplog)] == ["/", "/"]
    assert [line.status for line in access_lines(caplog)] == [200, 200]


def test_the_access_log_can_be_off(caplog) -> None:
    with caplog.at_level(logging.INFO):
        request(RequestObserver(hello, access_log=False))
    assert access_lines(caplog) == []


def test_requests_are_counted_by_method_route_and_status(metrics) -> None:
    app_metrics, registry = metrics
    for route, status, method in [
        ("/items", 200, "GET"),
        ("/items", 200, "GET"),
        (None, 404, "GET"),
        ("/items", 405, "BREW"),
    ]:
        request(
            RequestObserver(routed(route, status), access_log=False, metrics=app_metrics),
            method=method,
        )

    app_metrics.publish()  # as the worker does once a second

    def count(method: str, route: str, status: str) -> float | None:
        labels = {"method": method, "route": route, "status": status}
        return registry.get_sample_value("http_requests_total", labels)

    assert count("GET", "/items", "200") == 2
    assert count("GET", "<unmatched>", "404") == 1
    assert count("other", "/items", "405") == 1  # no label per made-up method
    duration = registry.get_sample_value(
        "http_request_duration_seconds_count",
        {"method": "GET", "route": "/items", "status": "200"},
    )
    assert duration == 2
    assert registry.get_sample_value("http_requests_in_flight") == 0


def test_a_request_in_flight_is_counted_while_it_runs(metrics) -> None:
    app_metrics, registry = metrics
    during = []

    async def app(scope, receive, send) -> None:
        app_metrics.publish()
        during.append(registry.get_sample_value("http_requests_in_flight"))
        await hello(scope, receive, send)

    request(RequestObserver(app, access_log=False, metrics=app_metrics))
    app_metrics.publish()
    assert during == [1]
    assert registry.get_sample_value("http_requests_in_flight") == 0


def test_an_application_error_is_logged_and_counted_as_500(caplog, metrics) -> None:
    app_metrics, registry = metrics

    async def fails(scope, receive, send) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="boom"):
        request(RequestObserver(fails, access_log=True, metrics=app_metrics))
    (line,) = access_lines(caplog)
    assert line.status == 500
    app_metrics.publish()
    labels = {"method": "GET", "route": "<unmatched>", "status": "500"}
    assert registry.get_sample_value("http_requests_total", labels) == 1
    assert current_request_id() is None


def test_other_scopes_pass_through_unobserved(caplog) -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    with caplog.at_level(logging.INFO):
        run(RequestObserver(app, access_log=True)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
    assert access_lines(caplog) == []


# A response that never completed: the status sent, and why it ended early -----------


def ended_without_completing(
    *, started: bool, scope_extra: dict | None = None, raises: bool = False
):
    """An application that sends its head (or nothing) and returns, as one whose
    client left does; ``scope_extra`` is what the server or an inner layer recorded
    before it sent anything."""

    async def app(scope, receive, send) -> None:
        scope.update(scope_extra or {})
        scope["route"] = "/r"
        if started:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        if raises:
            raise RuntimeError("boom")

    return app


@pytest.mark.parametrize(
    ("case", "status", "ended"),
    [
        ({"started": False}, 499, None),  # the client left before the answer
        ({"started": True}, 200, "client_gone"),  # it left mid-answer: the 200 went out
        ({"started": False, "scope_extra": {"client_error": 400}}, 400, None),  # body refused
        ({"started": True, "scope_extra": {"ended_early": "stalled"}}, 200, "stalled"),
        ({"started": True, "scope_extra": {"ended_early": "send_timeout"}}, 200, "send_timeout"),
        ({"started": True, "raises": True}, 200, "error"),  # its head went out: 200, cut
        ({"started": False, "raises": True}, 500, None),  # only a failure with nothing sent
        ({"started": True, "scope_extra": {"client_gone": True}}, 499, None),  # no one heard it
    ],
    ids=[
        "left-before",
        "left-during",
        "bad-body",
        "stalled",
        "send-timeout",
        "failed-during",
        "failed-before",
        "gone-before-head",
    ],
)
def test_an_unfinished_response_is_recorded_with_the_status_sent(
    case, status, ended, metrics, caplog
) -> None:
    """Never a 504 for a response whose 200 went out (a stream cut when it stalled,
    a client that stopped reading): the status sent, and why it ended early."""
    from tests.support.asgi import Client, http_scope

    app_metrics, registry = metrics
    observer = RequestObserver(
        ended_without_completing(**case), access_log=True, metrics=app_metrics
    )
    with caplog.at_level(logging.INFO), contextlib.suppress(RuntimeError):
        run(observer(http_scope("/r"), Client().receive, Client().send))
    app_metrics.publish()
    labels = {"method": "GET", "route": "/r", "status": str(status)}
    assert registry.get_sample_value("http_requests_total", labels) == 1
    early = {"route": "/r", "reason": ended}
    assert registry.get_sample_value("http_responses_ended_early_total", early) == (
        1 if ended else None
    )
    (line,) = access_lines(caplog)
    assert (line.status, getattr(line, "ended", None)) == (status, ended)
