"""The example's readiness check (example/checks.py) through the production command,
against the example's upstream stand-in (example/upstream.py) that goes away and
comes back."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.project.service import CHECK_ENV, SETTINGS, service
from tests.project.upstream import Upstream
from tests.support.server import Server, run

PROBE = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def ready(server: Server) -> httpx.Response:
    return PROBE.get(server.url("/health"))


def _poll(server: Server, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = ready(server)
        if response.status_code == status:
            return response
        time.sleep(0.05)
    raise AssertionError(f"/health did not turn {status} within {within}s:\n{server.log()}")


@pytest.mark.slow
def test_the_examples_upstream_check_follows_the_upstream() -> None:
    """Up: 200 naming the check; down: 503 within the cache time (and the check's
    bound); up again: 200, same worker, one log line per change."""
    with Upstream() as upstream:
        environ = {
            "HEALTH_CHECKS": "example.checks:upstream",
            "EXAMPLE_UPSTREAM_URL": upstream.url(),
            "GUNICORN_WORKERS": "1",
            "HEALTH_CACHE_SECONDS": "1",
        }
        with service(environ) as server:
            (worker,) = server.wait_for_workers(1)
            assert _poll(server, 200, within=10).json()["checks"] == [
                {**ready(server).json()["checks"][0], "name": "example.checks:upstream"}
            ]
            upstream.stop()
            stopped = time.monotonic()
            response = _poll(server, 503, within=10)
            to_503 = time.monotonic() - stopped
            assert response.json()["checks"][0]["name"] == "example.checks:upstream"
            assert response.json()["checks"][0]["ok"] is False
            assert str(upstream.port) not in response.text  # why stays in the log
            upstream.start()
            started = time.monotonic()
            _poll(server, 200, within=10)
            to_200 = time.monotonic() - started
            assert server.workers() == [worker]
            lines = [json.loads(line)["message"] for line in server.log_lines() if "{" in line]
    print(f"\nupstream stopped -> 503 after {to_503:.2f}s; started -> 200 after {to_200:.2f}s")
    assert to_503 < 1 + 0.5 + 1  # the cache time, the check's bound, a margin
    changes = [line for line in lines if line.startswith("readiness check example.checks")]
    assert len(changes) == 3, changes
    assert changes[1].startswith("readiness check example.checks:upstream fails: ")


def test_check_env_imports_the_examples_check_as_start_up_does() -> None:
    good = run(CHECK_ENV, {**SETTINGS, "HEALTH_CHECKS": "database,example.checks:upstream"})
    assert good.returncode == 0, good.stdout
    assert "configuration ok" in good.stdout
