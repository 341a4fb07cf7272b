"""Traces with OpenTelemetry: a server span per request, W3C trace context honoured, a
child span per PostgreSQL statement, exported over OTLP/HTTP by each worker.

Imported only when tracing is on (the composition root decides, from the
environment); with it off nothing here is loaded and the request path holds no
reference to it.

**Made after the fork.** The provider, its batch processor (a thread) and the
exporter are made in each worker as it starts serving (:meth:`RequestTracing.start`,
which the composition root hands to ``this_worker.when_serving``), never in
Gunicorn's master, which with ``GUNICORN_PRELOAD`` loads the application before it
forks: a batch processor made there has its thread in the master alone. They are
shut down when the worker has served its last request (:meth:`stop`, through
``this_worker.when_finished``), which exports every span still queued: a worker
stopped by SIGTERM dies of the signal Uvicorn re-raises, which runs no ``atexit``
handler, so the SDK's own would never run.

**The server span is the runtime's**, made by the request observer through
:meth:`RequestTracing.begin`, around every layer: the wait for a thread, a 504, the
probes (when traced) are in it, and it ends with the status sent and is named by the
route, ``GET /api/items`` (OpenTelemetry's HTTP conventions), which is known only
once the response is done. opentelemetry-instrumentation-django's middleware sees
only Django's part of a request, on its thread; opentelemetry-instrumentation-asgi
names a span before the route is known and adds a span per message sent.

**SQL** is opentelemetry-instrumentation-psycopg's: each statement a child span of
the request's. A call made outside any request (a readiness check's query, before a
scrape of /metrics too) would be a trace of its own; it is not sampled
(:class:`WithinRequests`).

**Outgoing calls** made with an instrumented client (a project's
``AioHttpClientInstrumentor().instrument()``) carry the context: the request's span
is current in the context the view runs in, and the propagators
``OTEL_PROPAGATORS`` names are the global ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.semconv.attributes import (
    client_attributes,
    error_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    url_attributes,
    user_agent_attributes,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from django_k8s_runtime.asgi_types import FAILED, ROUTE, STALLED
from django_k8s_runtime.observability import trace_ids

__all__ = ["RequestTracing", "ServerSpan", "WithinRequests", "sampler"]

TRACER_NAME = "django_k8s_runtime"


class _AsgiHeaders(Getter[Sequence[tuple[bytes, bytes]]]):
    """A request's header fields as the propagators read them, from the ASGI scope's
    list (names in lower case, as ASGI gives them)."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_HEADERS = _AsgiHeaders()
_PROPAGATORS = {"tracecontext": TraceContextTextMapPropagator, "baggage": W3CBaggagePropagator}


class WithinRequests(Sampler):
    """``sampler``'s decisions, except that a client span (a query, an outgoing call)
    with no span around it is dropped: spans begin with a request. Without this, each
    readiness check (a probe's, or the one before a scrape of /metrics) would be a
    trace of its own query."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT and not (
            trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        return self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"WithinRequests{{{self.sampler.get_description()}}}"


def sampler(name: str, ratio: float | None) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, as OpenTelemetry's SDK builds it,
    with ``OTEL_TRACES_SAMPLER_ARG``'s ratio (1.0 when empty)."""
    ratio = 1.0 if ratio is None else ratio
    root = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
    }
    if name.startswith("parentbased_"):
        return WithinRequests(ParentBased(root[name.removeprefix("parentbased_")]))
    return WithinRequests(root[name])


class RequestTracing:
    """The worker's tracer and the request observer's way to it. Built by the
    composition root from plain values (the environment's, checked at start-up);
    :meth:`start` in each worker before its first request, :meth:`stop` after its
    last."""

    def __init__(
        self,
        *,
        endpoint: str,
        service_name: str,
        resource_attributes: Mapping[str, str],
        sampler: Sampler,
        propagators: Collection[str],
        compression: str,
        timeout_seconds: float,
        untraced_paths: Collection[str] = (),
        version: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.attributes = {**resource_attributes}
        if service_name:
            self.attributes[SERVICE_NAME] = service_name
        self.sampler = sampler
        self.propagator: TextMapPropagator = CompositePropagator(
            [_PROPAGATORS[name]() for name in propagators if name in _PROPAGATORS]
        )
        self.compression = compression
        self.timeout_seconds = timeout_seconds
        self.untraced_paths = frozenset(untraced_paths)
        self.version = version
        self.provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None  # the worker's; None until it serves

    def start(self) -> None:
        """In the worker, before its first request: the provider, its batch processor
        and exporter, the propagators, and psycopg's instrumentation."""
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(
            endpoint=self.endpoint,
            timeout=self.timeout_seconds,
            compression=Compression.Gzip
            if self.compression == "gzip"
            else Compression.NoCompression,
        )
        # shutdown_on_exit=False: stop() does it, on every graceful way out.
        provider = TracerProvider(
            sampler=self.sampler,
            resource=Resource.create(self.attributes),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        propagate.set_global_textmap(self.propagator)
        PsycopgInstrumentor().instrument(tracer_provider=provider)
        self.use(provider)

    def use(self, provider: TracerProvider) -> None:
        """Make the requests' spans with ``provider`` from now on (:meth:`start` does,
        with the worker's; a test, with one of its own)."""
        self.provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME, self.version)

    def stop(self) -> None:
        """When the worker has served its last request: export what waits, bounded by
        the exporter's timeout, and stop the processor's thread."""
        self._tracer = None
        if self.provider is not None:
            self.provider.shutdown()

    def begin(self, scope: dict[str, Any]) -> ServerSpan | None:
        """The request's server span, made current (its parent from the request's
        ``traceparent``, if any); None for a path not traced, or outside a worker."""
        tracer = self._tracer
        if tracer is None or scope["path"] in self.untraced_paths:
            return None
        parent = self.propagator.extract(scope["headers"], getter=_HEADERS)
        method = scope["method"]
        span = tracer.start_span(method, parent, kind=SpanKind.SERVER)
        if span.is_recording():
            span.set_attributes(_request_attributes(scope, method))
        return ServerSpan(span, context.attach(trace.set_span_in_context(span, parent)))


class ServerSpan:
    """A request's span while it is current, with its ids bound for its log lines."""

    __slots__ = ("ids_token", "span", "token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self.token = token
        span_context = span.get_span_context()
        self.ids_token = trace_ids.bind(
            (format(span_context.trace_id, "032x"), format(span_context.span_id, "016x"))
        )

    def end(self, scope: dict[str, Any], status: int, ended: str | None) -> None:
        """Named by the route that answered, with the status sent (and why a response
        under way ended early); then no longer current."""
        span = self.span
        if span.is_recording():
            route = scope.get(ROUTE)
            if route:
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute(http_attributes.HTTP_ROUTE, route)
            span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status)
            if ended is not None:
                span.set_attribute(error_attributes.ERROR_TYPE, ended)
            elif status >= 500:
                span.set_attribute(error_attributes.ERROR_TYPE, str(status))
            if status >= 500 or ended in (FAILED, STALLED):  # the server's fault
                span.set_status(Status(StatusCode.ERROR))
        span.end()
        trace_ids.unbind(self.ids_token)
        context.detach(self.token)  # type: ignore[arg-type]


def _request_attributes(scope: dict[str, Any], method: str) -> dict[str, Any]:
    """What OpenTelemetry's HTTP server conventions ask of a request, from its scope;
    never the query string (where clients put tokens)."""
    attributes: dict[str, Any] = {
        http_attributes.HTTP_REQUEST_METHOD: method,
        url_attributes.URL_PATH: scope["path"],
        url_attributes.URL_SCHEME: scope.get("scheme", "http"),
        network_attributes.NETWORK_PROTOCOL_VERSION: scope.get("http_version", "1.1"),
    }
    client = scope.get("client")
    if client:
        attributes[client_attributes.CLIENT_ADDRESS] = client[0]
    server = scope.get("server")
    if server and server[1] is not None:
        attributes[server_attributes.SERVER_PORT] = server[1]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes[user_agent_attributes.USER_AGENT_ORIGINAL] = value.decode("latin-1")
            break
    return attributes
