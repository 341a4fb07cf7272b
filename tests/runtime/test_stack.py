"""The layers together, composed as the runtime's asgi.py composes them, around a tiny
application standing in for Django (it records its route as ``record_route`` does).

What only the composition shows: the observer outside sees the route the probes
record, and the request timeout's 504 with its request id.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from django_k8s_runtime.health.probes import ROUTES, Probes
from django_k8s_runtime.observability.logconfig import RequestContextFilter
from django_k8s_runtime.observability.metrics import Metrics
from django_k8s_runtime.observability.metrics_endpoint import MetricsEndpoint
from django_k8s_runtime.observability.observer import RequestObserver
from django_k8s_runtime.server.timeout import RequestTimeout
from django_k8s_runtime.server.worker_state import WorkerState
from tests.support.asgi import client, respond, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


async def django_stand_in(scope, receive, send) -> None:
    if scope["path"] == "/slow":
        await asyncio.sleep(30)  # ignores the disconnect: cancelled after the grace
    scope["route"] = "/items"
    await respond(send, 200, b"items")


def stack(registry: CollectorRegistry, state: WorkerState) -> MetricsEndpoint:
    app_metrics = Metrics(registry)
    probes = Probes(django_stand_in, [], draining=state.is_draining)

    async def record_readiness() -> None:  # as asgi.py's before_scrape
        app_metrics.publish()
        readiness = await probes.readiness()
        app_metrics.record_readiness(readiness.ready, {c.name: c.ok for c in readiness.checks})

    application = RequestTimeout(probes, seconds=state.request_timeout, grace=0.05)
    application = RequestObserver(
        application, access_log=True, quiet_routes=ROUTES, metrics=app_metrics
    )
    return MetricsEndpoint(
        application, port=9000, registry=registry, before_scrape=record_readiness
    )


def test_the_layers_together(caplog) -> None:
    registry = CollectorRegistry()
    state = WorkerState(pod_draining=lambda: False)
    app = stack(registry, state)
    state.serving(
        request_timeout=0.1, threads=2, stopping=lambda: False
    )  # after the stack is built
    caplog.handler.addFilter(RequestContextFilter())

    async def scenario():
        async with client(app) as http, client(app, port=9000) as scraper:
            probe = await http.get("/health")
            page = await http.get("/items")
            slow = await http.get("/slow", headers={"x-request-id": "slow-request-1"})
            scrape = await scraper.get("/metrics")
            return probe, page, slow, scrape

    with caplog.at_level(logging.INFO):
        probe, page, slow, scrape = run(scenario())

    assert (probe.status_code, page.status_code, slow.status_code) == (200, 200, 504)
    assert all("x-request-id" in r.headers for r in (probe, page, slow))
    assert slow.headers["x-request-id"] == "slow-request-1"

    access = [(r.path, r.status) for r in caplog.records if r.name == "django_k8s_runtime.access"]
    assert access == [("/items", 200), ("/slow", 504)]  # the probe is quiet
    (timeout,) = [r for r in caplog.records if r.name == "django_k8s_runtime.server.timeout"]
    assert timeout.request_id == "slow-request-1"

    def count(route: str, status: str) -> float | None:
        labels = {"method": "GET", "route": route, "status": status}
        return registry.get_sample_value("http_requests_total", labels)

    assert count("/health", "200") == 1  # labelled by the route the probes recorded
    assert count("/items", "200") == 1
    assert count("<unmatched>", "504") == 1
    assert "app_ready 1.0" in scrape.text
