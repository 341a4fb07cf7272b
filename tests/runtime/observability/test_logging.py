"""Logs as a collector and an operator see them, from a real multi-worker server."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.support.server import Server

pytestmark = pytest.mark.slow
HTTPS = {"x-forwarded-proto": "https"}


def eventually(read, *, until, timeout: float = 5.0):
    """Read again until the condition holds: a log line follows its response by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def records(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.log_lines()]


def test_every_line_is_json_from_start_to_shutdown_and_ids_tie_a_request_together() -> None:
    with Server({"GUNICORN_WORKERS": "3", "HEALTH_CHECKS": ""}) as server:
        server.wait_for_workers(3)
        ok = server.get("/_test/hello", headers={**HTTPS, "x-request-id": "req-abc-12345"})
        failed = server.get("/_test/raise", headers=HTTPS)
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        raw = server.log_lines()
        lines = [json.loads(line) for line in raw]  # raises on any line that is not JSON

    assert ok.headers["x-request-id"] == "req-abc-12345"
    assert failed.status_code == 500
    failed_id = failed.headers["x-request-id"]
    for line in lines:
        assert {"timestamp", "level", "logger", "message", "pid"} <= line.keys(), line
    messages = [line["message"] for line in lines]
    assert any(m.startswith("Starting gunicorn") for m in messages)
    assert any(m.startswith("Shutting down: Master") for m in messages)

    access = [line for line in lines if line["logger"] == "django_k8s_runtime.access"]
    (hello,) = [line for line in access if line["path"] == "/_test/hello"]
    assert hello["request_id"] == "req-abc-12345"
    assert (hello["method"], hello["status"], hello["client"]) == ("GET", 200, "127.0.0.1")
    assert hello["duration_ms"] > 0
    assert hello["pid"] != lines[0]["pid"]  # a worker, not the master

    # The 500's error log line (with its traceback) and its access line share the id.
    (error,) = [line for line in lines if line["logger"] == "django.request"]
    assert error["request_id"] == failed_id
    assert error["level"] == "ERROR"
    assert "RuntimeError: boom" in error["exc_info"]
    (failed_access,) = [line for line in access if line["path"] == "/_test/raise"]
    assert failed_access["request_id"] == failed_id
    assert failed_access["status"] == 500


def test_probes_are_not_access_logged_unless_asked() -> None:
    ids = {
        "/health": "probe-ready-0001",
        "/health/live": "probe-live-00001",
        "/_test/hello": "api-hello-000001",
    }
    for log_probes, logged in (("false", {"/_test/hello"}), ("true", set(ids))):
        with Server({"LOG_PROBES": log_probes, "HEALTH_CHECKS": ""}) as server:
            for path, request_id in ids.items():
                response = server.get(path, headers={"x-request-id": request_id})
                assert response.status_code == 200
            eventually(
                lambda server=server: [
                    r for r in records(server) if r["logger"] == "django_k8s_runtime.access"
                ],
                until=lambda found: any(r.get("request_id") == ids["/_test/hello"] for r in found),
            )
            time.sleep(0.3)  # a probe line, if one were written, would be out by now
            lines = [r for r in records(server) if r["logger"] == "django_k8s_runtime.access"]
        ours = {r["path"] for r in lines if r.get("request_id") in ids.values()}
        assert ours == logged, (log_probes, ours)


def test_the_access_log_can_be_switched_off() -> None:
    with Server({"GUNICORN_ACCESS_LOG": "false", "HEALTH_CHECKS": ""}) as server:
        server.get("/_test/hello")
        time.sleep(0.5)  # longer than the line would take to appear
        assert not [r for r in records(server) if r["logger"] == "django_k8s_runtime.access"]


def test_text_format_is_for_people() -> None:
    with Server({"LOG_FORMAT": "text", "HEALTH_CHECKS": ""}) as server:
        response = server.get("/_test/hello")
        log = eventually(server.log, until=lambda text: "GET /_test/hello" in text)
    assert "INFO gunicorn.error: Starting gunicorn" in log
    assert 'INFO django_k8s_runtime.access: 127.0.0.1 "GET /_test/hello" 200 ' in log
    assert f"[{response.headers['x-request-id']}]" in log
    assert not log.lstrip().startswith("{")


@pytest.mark.parametrize(
    "incoming",
    ["short", "x" * 129, "has space in it", "new\nline-injected", "<script>alert(1)</script>"],
    ids=["too-short", "too-long", "space", "newline", "markup"],
)
def test_malformed_request_ids_are_replaced(incoming: str) -> None:
    from django_k8s_runtime.observability.request_id import accept_or_make

    replaced = accept_or_make(incoming.encode())
    assert replaced != incoming
    assert len(replaced) == 32


def test_the_504_of_the_request_timeout_is_logged_and_carries_the_id() -> None:
    with Server({"GUNICORN_TIMEOUT": "1", "GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}) as server:
        response = server.get(
            "/_test/sleep?s=3", headers={**HTTPS, "x-request-id": "slow-req-0001"}
        )
        assert response.status_code == 504
        assert response.headers["x-request-id"] == "slow-req-0001"
        lines = eventually(
            lambda: records(server),
            until=lambda found: any(
                r["logger"] == "django_k8s_runtime.access" and r["path"].startswith("/_test")
                for r in found
            ),
        )
    (access,) = [
        r
        for r in lines
        if r["logger"] == "django_k8s_runtime.access" and r["path"].startswith("/_test")
    ]
    assert (access["status"], access["request_id"]) == (504, "slow-req-0001")
    (timeout,) = [r for r in lines if r["logger"] == "django_k8s_runtime.server.timeout"]
    assert timeout["request_id"] == "slow-req-0001"


def test_a_client_cannot_write_lines_into_the_text_log() -> None:
    """A path with %0d%0a wrote a second, made-up line; ESC and NUL passed through raw."""
    import socket

    forged = '2026-01-01 00:00:00+0000 [1] INFO access: 10.0.0.1 "GET /admin" 200 1.0ms'
    path = "/no-such-page%0d%0a" + forged.replace(" ", "%20") + "%1b%5b31m%00"
    with Server({"LOG_FORMAT": "text", "HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            assert client.recv(65536).startswith(b"HTTP/1.1 404")
        log = eventually(
            server.log, until=lambda text: "INFO django_k8s_runtime.access: 127.0.0.1" in text
        )
    assert not any(line.startswith(forged) for line in log.splitlines()), log
    assert "\x1b" not in log
    assert "\x00" not in log
    # The access line and Django's "Not Found" warning, each on one line, escaped.
    escaped = "/no-such-page\\r\\n" + forged + "\\x1b[31m\\x00"
    assert f'INFO django_k8s_runtime.access: 127.0.0.1 "GET {escaped}" 404 ' in log, log
    assert f"WARNING django.request: Not Found: {escaped}" in log, log


@pytest.mark.parametrize(
    ("body", "content_type", "refusal"),
    [
        (
            "&".join(f"f{n}=1" for n in range(1001)).encode(),
            "application/x-www-form-urlencoded",
            "TooManyFieldsSent",
        ),
        (
            b"".join(
                b'--b\r\nContent-Disposition: form-data; name="f%d"; filename="f"\r\n\r\nx\r\n' % n
                for n in range(101)
            )
            + b"--b--\r\n",
            "multipart/form-data; boundary=b",
            "TooManyFilesSent",
        ),
    ],
    ids=["fields", "files"],
)
def test_too_many_fields_or_files_is_one_warning_line(
    body: bytes, content_type: str, refusal: str
) -> None:
    """Django logged each at ERROR with a full traceback: any client could flood the
    error log. Now it is one warning line, like a bad Host; the access log keeps the 400."""
    import httpx

    with Server({"HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}) as server:
        response = httpx.post(
            server.url("/_test/echo"),
            content=body,
            headers={**HTTPS, "content-type": content_type},
            timeout=30,
        )
        assert response.status_code == 400
        lines = eventually(
            lambda: records(server),
            until=lambda found: any(
                r["logger"] == "django_k8s_runtime.access" and r["status"] == 400 for r in found
            ),
        )
    refused = [r for r in lines if r["logger"] == f"django.security.{refusal}"]
    assert len(refused) == 1, lines
    assert refused[0]["level"] == "WARNING"
    assert "exc_info" not in refused[0]
    assert not [r for r in lines if r["level"] == "ERROR"], lines


def test_no_access_line_or_request_count_is_lost_at_a_graceful_stop(tmp_path) -> None:
    """Lines wait a moment to be written together and counts are published once a
    second: a worker stopping writes and publishes what waited before it exits."""
    import concurrent.futures

    from prometheus_client import CollectorRegistry, multiprocess

    from tests.support.server import free_port

    directory = tmp_path / "metrics"  # an operator's directory outlives the server
    environ = {
        "GUNICORN_WORKERS": "2",
        "HEALTH_CHECKS": "",
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    with Server(environ) as server, concurrent.futures.ThreadPoolExecutor(8) as pool:
        server.wait_for_workers(2)
        answered = list(pool.map(lambda _: server.get("/_test/hello"), range(60)))
        server.signal(signal.SIGTERM)  # at once: lines and counts still waiting
        assert server.wait(timeout=30) == 0
        access = [r for r in records(server) if r["logger"] == "django_k8s_runtime.access"]

    assert [r.status_code for r in answered] == [200] * 60
    assert len([r for r in access if r["path"] == "/_test/hello"]) == 60
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    labels = {"method": "GET", "route": "/_test/hello", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 60
