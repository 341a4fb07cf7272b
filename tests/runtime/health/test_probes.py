"""The probes in-process: answers, readiness, draining and the route they record.

test_probes_under_gunicorn.py asks a real Gunicorn as the kubelet does, against a
real PostgreSQL; here the checks are real :class:`health.checks.Check` objects
around tiny async functions.
"""

from __future__ import annotations

import asyncio

import pytest

from django_k8s_runtime.health.checks import Check
from django_k8s_runtime.health.probes import ROUTES, Probes, Readiness
from tests.support.asgi import Client, client, hello, http_scope, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


def check(name: str, ok: bool = True) -> Check:
    async def probe() -> None:
        if not ok:
            raise ConnectionError("refused")

    return Check(name, probe, timeout=1, cache_seconds=0)


def probes(*checks: Check, draining: bool = False, app=hello) -> Probes:
    return Probes(app, checks, draining=lambda: draining)


def get(app, path: str, method: str = "GET"):
    async def scenario():
        async with client(app) as http:
            return await http.request(method, path)

    return run(scenario())


@pytest.mark.parametrize("path", ["/health/live", "/health/live/"])
def test_liveness_answers_without_asking_any_check(path: str) -> None:
    response = get(probes(check("database", ok=False)), path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"


def test_readiness_reports_each_check() -> None:
    response = get(probes(check("database:default"), check("cache")), "/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert [(c["name"], c["ok"]) for c in body["checks"]] == [
        ("database:default", True),
        ("cache", True),
    ]


def test_a_failing_check_makes_the_pod_unready_without_details() -> None:
    response = get(probes(check("database:default"), check("cache", ok=False)), "/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "refused" not in response.text


def test_a_draining_server_is_unready_even_with_every_check_passing() -> None:
    response = get(probes(check("database:default"), draining=True), "/health")
    assert response.status_code == 503
    assert response.json()["status"] == "shutting down"


def test_draining_is_asked_at_each_probe() -> None:
    state = {"draining": False}
    app = Probes(hello, [], draining=lambda: state["draining"])
    assert get(app, "/health").status_code == 200
    state["draining"] = True
    assert get(app, "/health").status_code == 503


def test_no_checks_means_ready() -> None:
    assert get(probes(), "/health").json() == {"status": "ok", "checks": []}


def test_head_has_the_headers_and_no_body() -> None:
    response = get(probes(), "/health", "HEAD")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(b'{"status": "ok", "checks": []}')


def test_other_methods_are_refused() -> None:
    response = get(probes(), "/health/live", "POST")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("path", "method", "route"),
    [
        ("/health", "GET", "/health"),
        ("/health/", "GET", "/health"),
        ("/health/live", "HEAD", "/health/live"),
        ("/health/live/", "POST", "/health/live"),
    ],
)
def test_a_probe_records_its_route_as_django_does(path: str, method: str, route: str) -> None:
    client_ = Client()
    scope = http_scope(path, method=method)
    run(probes()(scope, client_.receive, client_.send))
    assert scope["route"] == route
    assert route in ROUTES


@pytest.mark.parametrize("path", ["/", "/healthz", "/health/live/x", "/api/health"])
def test_every_other_path_goes_to_the_application(path: str) -> None:
    client_ = Client()
    scope = http_scope(path)
    run(probes()(scope, client_.receive, client_.send))
    assert client_.body == b"hello"
    assert "route" not in scope  # the application records its own


def test_other_scopes_go_to_the_application() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    run(probes(app=app)({"type": "websocket", "path": "/health"}, None, None))
    run(probes(app=app)({"type": "lifespan"}, None, None))
    assert seen == ["websocket", "lifespan"]


def test_readiness_is_a_value_others_can_record() -> None:
    readiness = run(probes(check("database:default"), check("cache", ok=False)).readiness())
    assert isinstance(readiness, Readiness)
    assert (readiness.ready, readiness.status) == (False, 503)
    assert [(c.name, c.ok) for c in readiness.checks] == [
        ("database:default", True),
        ("cache", False),
    ]


def test_checks_run_concurrently() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.2)

    app = probes(*(Check(f"c{n}", slow, timeout=1, cache_seconds=0) for n in range(5)))

    async def scenario():
        started = asyncio.get_running_loop().time()
        await app.readiness()
        return asyncio.get_running_loop().time() - started

    assert run(scenario()) < 0.2 * 5 / 2


# Moved (HEALTH_PATH, HEALTH_LIVE_PATH): a project's page at /health is its own again ---


def moved(*checks: Check) -> Probes:
    return Probes(hello, checks, draining=lambda: False, ready_path="/readyz", live_path="/livez")


@pytest.mark.parametrize(
    ("path", "route"), [("/readyz", "/readyz"), ("/readyz/", "/readyz"), ("/livez", "/livez")]
)
def test_moved_probes_answer_at_their_paths_and_record_them(path: str, route: str) -> None:
    client_ = Client()
    scope = http_scope(path)
    run(moved(check("database", ok=False))(scope, client_.receive, client_.send))
    assert scope["route"] == route
    assert client_.status == (503 if route == "/readyz" else 200)
    assert route in moved().routes


@pytest.mark.parametrize("path", ["/health", "/health/", "/health/live"])
def test_once_moved_the_old_paths_are_the_applications(path: str) -> None:
    client_ = Client()
    scope = http_scope(path)
    run(moved()(scope, client_.receive, client_.send))
    assert client_.body == b"hello"
    assert "route" not in scope


def test_the_default_paths_are_the_declared_defaults() -> None:
    from django_k8s_runtime import env

    assert probes().routes == ROUTES == {env.HEALTH_PATH.default, env.HEALTH_LIVE_PATH.default}
