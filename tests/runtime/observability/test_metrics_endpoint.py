"""MetricsEndpoint in-process: /metrics on its own port only, rendered by
prometheus_client (formats, compression), with readiness recorded at each scrape."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from django_k8s_runtime.observability.metrics import Metrics
from django_k8s_runtime.observability.metrics_endpoint import MetricsEndpoint
from tests.support.asgi import client, hello, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process

METRICS_PORT, PUBLIC_PORT = 9000, 8000


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Metrics(registry).requests.labels("GET", "/_test/hello", "200").inc(3)
    return registry


def request(app, path: str, *, port: int = METRICS_PORT, method: str = "GET", **headers: str):
    async def scenario():
        async with client(app, port=port) as http:
            return await http.request(method, path, headers=headers)

    return run(scenario())


def test_a_scrape_gets_the_text_format(registry) -> None:
    response = request(
        MetricsEndpoint(hello, port=METRICS_PORT, registry=registry),
        "/metrics",
        **{"accept-encoding": "identity"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    assert (
        'http_requests_total{method="GET",route="/_test/hello",status="200"} 3.0' in response.text
    )


def test_openmetrics_when_the_scraper_asks_for_it(registry) -> None:
    response = request(
        MetricsEndpoint(hello, port=METRICS_PORT, registry=registry),
        "/metrics",
        accept="application/openmetrics-text; version=1.0.0",
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_compressed_when_the_scraper_accepts_gzip(registry) -> None:
    async def scenario():
        async with client(
            MetricsEndpoint(hello, port=METRICS_PORT, registry=registry), port=METRICS_PORT
        ) as http:
            request = http.build_request("GET", "/metrics", headers={"accept-encoding": "gzip"})
            return await http.send(request, stream=True)

    response = run(scenario())
    assert response.headers["content-encoding"] == "gzip"
    raw = run(response.aread())
    assert b"http_requests_total" in raw  # httpx decoded it...
    assert int(response.headers["content-length"]) < len(raw)  # ...from a smaller body


def test_head_has_the_headers_and_no_body(registry) -> None:
    endpoint = MetricsEndpoint(hello, port=METRICS_PORT, registry=registry)
    get, head = request(endpoint, "/metrics"), request(endpoint, "/metrics", method="HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


@pytest.mark.parametrize(
    ("path", "method"), [("/", "GET"), ("/_test/hello", "GET"), ("/metrics", "POST")]
)
def test_the_metrics_port_serves_nothing_else(registry, path: str, method: str) -> None:
    response = request(
        MetricsEndpoint(hello, port=METRICS_PORT, registry=registry), path, method=method
    )
    assert response.status_code == 404
    assert response.text == "not found: only /metrics here\n"


def test_the_public_port_never_serves_metrics(registry) -> None:
    response = request(
        MetricsEndpoint(hello, port=METRICS_PORT, registry=registry), "/metrics", port=PUBLIC_PORT
    )
    assert response.text == "hello"  # the application's own answer


def test_readiness_is_recorded_at_each_scrape() -> None:
    """app_ready is whatever readiness is when Prometheus asks, not at the last probe."""
    registry = CollectorRegistry()
    app_metrics = Metrics(registry)
    state = {"ready": True, "scrapes": 0}

    async def record_readiness() -> None:
        state["scrapes"] += 1
        app_metrics.record_readiness(state["ready"], {"database:default": state["ready"]})

    endpoint = MetricsEndpoint(
        hello, port=METRICS_PORT, registry=registry, before_scrape=record_readiness
    )
    assert "app_ready 1.0" in request(endpoint, "/metrics").text
    state["ready"] = False
    scraped = request(endpoint, "/metrics").text
    assert "app_ready 0.0" in scraped
    assert 'app_health_check_ok{check="database:default"} 0.0' in scraped
    request(endpoint, "/metrics", port=PUBLIC_PORT)
    request(endpoint, "/elsewhere")
    assert state["scrapes"] == 2  # only a scrape records it


def test_other_scopes_pass_through(registry) -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    run(
        MetricsEndpoint(app, port=METRICS_PORT, registry=registry)({"type": "lifespan"}, None, None)
    )
    assert seen == ["lifespan"]
