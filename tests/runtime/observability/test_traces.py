"""The server span in-process: the request observer with the runtime's tracing, its
spans kept by OpenTelemetry's own in-memory exporter (the real-process test,
test_tracing_under_gunicorn.py, exports them over OTLP from Gunicorn's workers).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from django_k8s_runtime.asgi_types import ENDED_EARLY, STALLED
from django_k8s_runtime.observability import traces
from django_k8s_runtime.observability.logconfig import RequestContextFilter
from django_k8s_runtime.observability.observer import RequestObserver
from django_k8s_runtime.observability.trace_ids import current_trace_ids
from tests.support.asgi import Client, client, http_scope, respond, run

pytestmark = pytest.mark.in_process

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def traceparent(sampled: bool = True, trace_id: str = TRACE_ID) -> str:
    return f"00-{trace_id}-{PARENT}-0{int(sampled)}"


def traced(
    app, *, sampler: str = "parentbased_always_on", ratio: float | None = None, **options
) -> tuple[RequestObserver, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = traces.RequestTracing(
        endpoint="http://127.0.0.1:4318/v1/traces",  # never used: the test's provider is
        service_name="test",
        resource_attributes={},
        sampler=traces.sampler(sampler, ratio),
        propagators=("tracecontext", "baggage"),
        compression="none",
        timeout_seconds=1,
        **options,
    )
    provider = TracerProvider(sampler=tracing.sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    return RequestObserver(app, access_log=False, tracing=tracing), exporter


def routed(route: str | None, status: int = 200, **scope_notes):
    async def app(scope, receive, send) -> None:
        if route is not None:
            scope["route"] = route
        scope.update(scope_notes)
        await respond(send, status, b"answer")

    return app


def get(app, path: str = "/", **headers: str):
    async def scenario():
        async with client(app) as http:
            return await http.get(path, headers=headers)

    return run(scenario())


def test_an_incoming_traceparent_is_the_parent_and_the_route_names_the_span() -> None:
    observer, exporter = traced(routed("/items/<int:pk>"))
    assert get(observer, "/items/7?token=secret", traceparent=traceparent()).status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT
    assert span.parent.is_remote
    assert span.name == "GET /items/<int:pk>"  # never the raw path
    attributes = dict(span.attributes)
    assert attributes["http.route"] == "/items/<int:pk>"
    assert attributes["url.path"] == "/items/7"
    assert "secret" not in repr(attributes)  # the query string is left out
    assert attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("header", ["", "00-zz-00f067aa0ba902b7-01", traceparent()[:-3]])
def test_without_a_valid_traceparent_a_request_starts_its_own_trace(header: str) -> None:
    observer, exporter = traced(routed("/"))
    get(observer, traceparent=header) if header else get(observer)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != TRACE_ID


def test_a_server_error_is_an_error_and_a_response_with_no_route_is_named_by_its_method() -> None:
    observer, exporter = traced(routed(None, 503))
    get(observer, "/nowhere")
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes)["error.type"] == "503"


def test_a_response_that_ended_early_keeps_the_status_sent_and_says_why() -> None:
    async def stalled(scope, receive, send) -> None:  # as a stream cut for its quiet
        scope["route"], scope[ENDED_EARLY] = "/events", STALLED
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    observer, exporter = traced(stalled)
    run(observer(http_scope("/events"), Client().receive, Client().send))
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes)
    assert attributes["http.response.status_code"] == 200
    assert attributes["error.type"] == STALLED
    assert span.status.status_code is StatusCode.ERROR


def test_the_span_is_current_for_the_application_its_threads_and_its_log_lines() -> None:
    """And so for an instrumented client's outgoing call, which injects the current
    context with the global propagators."""
    seen = {}

    def in_a_thread() -> None:
        seen["thread"] = (trace.get_current_span().get_span_context(), current_trace_ids())
        seen["outgoing"] = {}
        propagate.inject(seen["outgoing"])  # what an instrumented client does for its call
        record = logging.makeLogRecord({"msg": "from the view"})
        RequestContextFilter().filter(record)
        seen["record"] = (record.trace_id, record.span_id)

    async def app(scope, receive, send) -> None:
        seen["loop"] = trace.get_current_span().get_span_context()
        context = contextvars.copy_context()  # as the runtime's thread pool hands it over
        thread = threading.Thread(target=context.run, args=(in_a_thread,))
        thread.start()
        await asyncio.to_thread(thread.join)
        await respond(send, 200, b"")

    observer, exporter = traced(app)
    get(observer, traceparent=traceparent())
    (span,) = exporter.get_finished_spans()
    ids = (TRACE_ID, format(span.context.span_id, "016x"))
    assert seen["loop"] == span.context
    assert seen["thread"] == (span.context, ids)
    assert seen["record"] == ids
    assert seen["outgoing"]["traceparent"] == f"00-{TRACE_ID}-{ids[1]}-01"
    assert current_trace_ids() is None  # unbound after the request
    assert not trace.get_current_span().get_span_context().is_valid


def test_untraced_paths_make_no_span_and_bind_no_ids() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(current_trace_ids())
        await respond(send, 200, b"")

    observer, exporter = traced(app, untraced_paths={"/health", "/health/"})
    get(observer, "/health", traceparent=traceparent())
    get(observer, "/health/", traceparent=traceparent())
    assert exporter.get_finished_spans() == ()
    assert seen == [None, None]


@pytest.mark.parametrize(
    ("sampled_parent", "recorded"), [(None, False), (True, True), (False, False)]
)
def test_parent_based_sampling_follows_the_callers_flag(sampled_parent, recorded) -> None:
    """Ratio 0 for requests without a parent; a parent's flag decides for the others.
    A request not sampled still has its ids in its log lines."""
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(current_trace_ids())
        await respond(send, 200, b"")

    observer, exporter = traced(app, sampler="parentbased_traceidratio", ratio=0.0)
    if sampled_parent is None:
        get(observer)
    else:
        get(observer, traceparent=traceparent(sampled_parent))
    assert len(exporter.get_finished_spans()) == (1 if recorded else 0)
    assert seen[0] is not None
    assert len(seen[0][0]) == 32


def test_a_client_span_outside_any_request_is_not_sampled() -> None:
    """A readiness check's query, or one before a scrape of /metrics, is no trace."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=traces.sampler("always_on", None), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT):
        pass
    with (
        tracer.start_as_current_span("job"),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT),
    ):
        pass
    assert [span.name for span in exporter.get_finished_spans()] == ["SELECT", "job"]
