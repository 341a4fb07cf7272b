"""Traces under the production command: Gunicorn's master, two workers, preloaded or
not, exporting OTLP over HTTP to a receiver of the test's own that decodes
OpenTelemetry's protobuf messages (harness/otlp.py).

A request sent with a known ``traceparent`` gives a server span with that trace id
and parent, named by its route, a child span for its SQL on PostgreSQL; its JSON
access line, and Django's error line of a failing request, carry the same trace id
and span id. The probes and /metrics make none. After SIGTERM every span of the
requests served has arrived (the batch processor's 5 s had not come: the worker's
last export did it). Tracing off: no exporter thread, the tracing modules not even
loaded, no span, no trace ids in the log.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.otlp import Receiver, Span
from tests.support.server import Server, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PARENT_SPAN = "00f067aa0ba902b7"  # the caller's span, as W3C trace context's example has it
QUERY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FAILING_TRACE = "0af7651916cd43dd8448eb211c80319c"
EXPORTER_THREAD = "OtelBatchSpanRecordProcessor"  # the SDK's batch processor's thread


def traceparent(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{PARENT_SPAN}-01"}


@dataclass
class Served:
    """What a server did, from its start to its exit after SIGTERM."""

    sent: dict[str, str]  # trace id -> path, every request to the application's port
    workers: dict[int, dict]  # pid -> what /_test/threads said there
    master_threads: int
    exit_code: int
    log: list[dict]
    raw_log: str


def serve_and_stop(postgres, *, preload: bool, receiver: Receiver | None) -> Served:
    metrics_port = free_port()
    environ = {
        "DATABASE_URL": postgres.url(),
        "HEALTH_CHECKS": "database",  # the readiness probe queries PostgreSQL
        "METRICS_PORT": str(metrics_port),
        "GUNICORN_WORKERS": "2",
        "GUNICORN_PRELOAD": "true" if preload else "false",
    }
    if receiver is not None:
        environ |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "traced-service",
            "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=web-1,k8s.namespace.name=shop",
        }
    sent: dict[str, str] = {}

    def get(server: Server, path: str, trace_id: str) -> httpx.Response:
        sent[trace_id] = path
        return server.get(path, headers=traceparent(trace_id))

    server = Server(environ)
    with server:
        server.wait_for_workers(2)
        master_threads = len(list(Path(f"/proc/{server.master_pid}/task").iterdir()))
        assert get(server, "/_test/db-ping", QUERY_TRACE).status_code == 200
        assert get(server, "/_test/raise", FAILING_TRACE).status_code == 500
        for number in range(20):
            assert get(server, "/_test/hello", f"{number + 1:032x}").status_code == 200
        workers: dict[int, dict] = {}
        for number in range(40):  # until both workers have answered
            answer = get(server, "/_test/threads", f"{number + 1:016x}{0:016x}").json()
            workers[answer.pop("pid")] = answer
            if len(workers) == 2:
                break
        for probe in ("/health", "/health/live"):
            assert server.get(probe, via_ingress=False).status_code == 200
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scrape.status_code == 200
        assert "app_ready 1.0" in scrape.text
        server.signal(signal.SIGTERM)
        exit_code = server.wait(60)
    raw = server.log()
    lines = [json.loads(line) for line in raw.splitlines() if line.startswith("{")]
    return Served(sent, workers, master_threads, exit_code, lines, raw)


def access_line(served: Served, path: str) -> dict:
    (line,) = [
        entry
        for entry in served.log
        if entry["logger"] == "django_k8s_runtime.access" and entry["path"] == path
    ]
    return line


def server_spans(spans: list[Span]) -> dict[str, Span]:
    found = {span.trace_id: span for span in spans if span.kind == "server"}
    assert len(found) == len([span for span in spans if span.kind == "server"])
    return found


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_a_request_is_traced_from_its_traceparent_to_its_sql_and_its_log(
    postgres, preload: bool
) -> None:
    with Receiver() as receiver:
        served = serve_and_stop(postgres, preload=preload, receiver=receiver)
        spans = receiver.taken()  # the server has exited: nothing more can come

    assert served.exit_code == 0, served.raw_log
    # Made in each worker, never in the master (one thread: its own).
    assert served.master_threads == 1
    assert len(served.workers) == 2
    for worker in served.workers.values():
        assert EXPORTER_THREAD in worker["threads"]
        assert "django_k8s_runtime.observability.traces" in worker["tracing_loaded"]

    # Every request served has its server span, and nothing else made one.
    by_trace = server_spans(spans)
    assert set(by_trace) == set(served.sent)
    for trace_id, path in served.sent.items():
        assert by_trace[trace_id].attributes["url.path"] == path
        assert by_trace[trace_id].parent_span_id == PARENT_SPAN

    query = by_trace[QUERY_TRACE]
    assert query.name == "GET /_test/db-ping"
    assert query.attributes["http.route"] == "/_test/db-ping"
    assert query.attributes["http.response.status_code"] == 200
    assert query.attributes["http.request.method"] == "GET"
    assert query.resource["service.name"] == "traced-service"
    assert query.resource["k8s.pod.name"] == "web-1"
    # Its statements (and the pool's check of the connection it lent, an empty one).
    children = [span for span in spans if span.parent_span_id == query.span_id]
    for child in children:
        assert (child.trace_id, child.kind) == (QUERY_TRACE, "client")
        assert child.attributes["db.system"] == "postgresql"
        assert query.start_ns <= child.start_ns <= child.end_ns <= query.end_ns
    assert [child.attributes["db.statement"] for child in children if child.name == "SELECT"] == [
        "SELECT 1"
    ]
    # Every client span (SQL) is inside a request: the probes' readiness checks and
    # the one before the scrape made none, and neither did the probes themselves.
    server_ids = {span.span_id for span in by_trace.values()}
    assert all(span.parent_span_id in server_ids for span in spans if span.kind != "server")
    assert "/health" not in {span.attributes.get("url.path") for span in spans}

    failing = by_trace[FAILING_TRACE]
    assert (failing.name, failing.status_code) == ("GET /_test/raise", 2)  # error
    assert failing.attributes["http.response.status_code"] == 500

    # The log: the access line and Django's own error line, beside the request id.
    line = access_line(served, "/_test/db-ping")
    assert (line["trace_id"], line["span_id"]) == (QUERY_TRACE, query.span_id)
    assert line["request_id"]
    (error,) = [entry for entry in served.log if entry["logger"] == "django.request"]
    assert (error["trace_id"], error["span_id"]) == (FAILING_TRACE, failing.span_id)
    assert error["request_id"] == access_line(served, "/_test/raise")["request_id"]


def test_with_tracing_off_nothing_is_loaded_made_or_sent(postgres) -> None:
    with Receiver() as receiver:
        served = serve_and_stop(postgres, preload=True, receiver=None)
        received = receiver.requests

    assert served.exit_code == 0, served.raw_log
    assert received == 0
    assert len(served.workers) == 2
    for worker in served.workers.values():
        assert EXPORTER_THREAD not in worker["threads"]
        assert worker["tracing_loaded"] == []
    line = access_line(served, "/_test/db-ping")
    assert "trace_id" not in line
    assert "span_id" not in line
    assert not any("trace_id" in entry for entry in served.log)


def test_a_worker_recycled_after_its_max_requests_has_exported_its_spans_when_it_is_gone() -> None:
    """Its spans are sent before it exits (the batch processor's own export comes only
    every 5 s): once its process is gone, every span of the requests it served (the
    probes' count towards its limit too) has arrived."""
    with Receiver() as receiver:
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "traced-service",
            "GUNICORN_WORKERS": "1",
            "GUNICORN_MAX_REQUESTS": "10",
            "HEALTH_CHECKS": "",
        }
        with Server(environ) as server:
            (worker,) = server.wait_for_workers(1)
            served = []  # trace ids of the requests the first worker answered
            for number in range(20):
                trace_id = f"{number + 1:032x}"
                if server.get("/_test/pid", headers=traceparent(trace_id)).json()["pid"] != worker:
                    break  # its successor's
                served.append(trace_id)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not Path(f"/proc/{worker}").exists(), server.log()
            spans = receiver.taken()
    assert served
    assert set(served) <= {span.trace_id for span in spans if span.kind == "server"}
