"""The front door through Gateway API (components/gateway-api) and Envoy Gateway's
policy for it (components/envoy-gateway), rendered with the base: valid against
Gateway API's published schema (Standard channel), and the numbers agree with the
server's (its timeout, its pings, its keep-alive, its 503s)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from config.routing import websocket_application
from django_k8s_runtime import env
from tests.project.deploy.rendering import (
    BASE,
    ROOT,
    by_kind,
    published_schema_errors,
    render,
)

# The server answers its own 504 at GUNICORN_TIMEOUT; the gateway waits this much more.
MARGIN_SECONDS = 5
GATEWAY_API = "gateway.networking.k8s.io"
# Envoy Gateway's retry triggers for failures the application never saw: no
# connection, a pooled connection closed before the request was written, an HTTP/2
# stream refused before processing.
UNSEEN_FAILURES = {"connect-failure", "reset-before-request", "refused-stream"}
DOCS = ROOT / "docs" / "kubernetes.md"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    return render(tmp_path_factory.mktemp("overlay"), "gateway-api", "envoy-gateway")


@pytest.fixture(scope="module")
def routes(rendered) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in rendered if doc["kind"] == "HTTPRoute"}


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, dict]:
    return by_kind([doc for doc in rendered if doc["kind"] != "HTTPRoute"])


@pytest.fixture(scope="module")
def route(routes) -> dict:
    """The route that serves the application (the other one redirects)."""
    return routes["django-app"]


@pytest.fixture(scope="module")
def container_env(objects) -> dict[str, str]:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", "from-a-secret") for item in container["env"]}


@pytest.fixture(scope="module")
def configured(container_env) -> env.Snapshot:
    """The Deployment's configuration, as rendered, as the server would read it."""
    return env.load(container_env)


@pytest.fixture(scope="module")
def docs_gateway() -> dict:
    """The Gateway docs/kubernetes.md shows for these routes."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    documents = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    (gateway,) = [doc for doc in documents if doc.get("kind") == "Gateway"]
    return gateway


def seconds(duration: str) -> float:
    """A Gateway API duration (GEP-2257: `1h`, `35s`, `1m30s`, `500ms`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+)(ms|h|m|s)", duration)
    assert "".join(n + unit for n, unit in parts) == duration, duration
    return sum(int(n) * units[unit] for n, unit in parts)


def rule_for(route: dict, path: str) -> dict:
    """The rule a request for `path` takes: the longest matching path prefix."""
    candidates = [
        (len(match["path"]["value"]), index)
        for index, rule in enumerate(route["spec"]["rules"])
        for match in rule["matches"]
        if match["path"]["type"] == "PathPrefix"
        and (path + "/").startswith(match["path"]["value"].rstrip("/") + "/")
    ]
    assert candidates, f"no rule serves {path}"
    return route["spec"]["rules"][max(candidates)[1]]


def websocket_paths() -> list[str]:
    """The project's WebSocket URLs (config/routing.py), as a client asks for them."""
    return ["/" + str(route.pattern) for route in websocket_application.routes]


# What is rendered ---------------------------------------------------------------


def test_the_components_render_with_the_base_in_place_of_the_ingress(rendered, objects) -> None:
    assert sorted(doc["kind"] for doc in rendered) == [
        "BackendTrafficPolicy",
        "Deployment",
        "HTTPRoute",
        "HTTPRoute",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Service",
    ]
    version = kubernetes_validate.latest_version()
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"):
        kubernetes_validate.validate(objects[kind], version, strict=True)


@pytest.mark.slow
def test_every_gateway_api_object_is_valid_against_the_published_schema(
    rendered, docs_gateway
) -> None:
    """The routes, and the Gateway the docs show, against Gateway API's schema: its
    validator, no field it lacks, and none of its Experimental channel."""
    checked = [doc for doc in rendered if doc["apiVersion"].startswith(GATEWAY_API)]
    assert len(checked) == 2
    errors = published_schema_errors([*checked, docs_gateway])
    assert errors == {name: [] for name in errors}
    assert len(errors) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda rule: rule["timeouts"].update(request="35 s"), "must match pattern"),
        (lambda rule: rule.update(retries=2), "'\"retries\"' does not exist"),
        (lambda rule: rule.update(retry={"attempts": 2}), "Experimental channel"),
        (lambda rule: rule["backendRefs"][0].update(port="http"), "must be integer"),
    ],
    ids=["bad-duration", "unknown-field", "experimental-field", "wrong-type"],
)
def test_the_schema_check_finds_what_an_api_server_would_refuse(route, change, expected) -> None:
    broken = copy.deepcopy(route)
    change(broken["spec"]["rules"][-1])
    (errors,) = published_schema_errors([broken]).values()
    assert any(expected in error for error in errors), errors


# The numbers agree with the server's ----------------------------------------------------


def test_requests_run_their_whole_timeout_through_the_route(route, configured) -> None:
    """The server answers 504 at GUNICORN_TIMEOUT, logs it and cancels the query; a
    gateway that gave up first would answer its own 504 while the view ran on."""
    timeout = seconds(rule_for(route, "/")["timeouts"]["request"])
    assert timeout >= configured.GUNICORN_TIMEOUT + MARGIN_SECONDS
    for rule in route["spec"]["rules"]:
        assert "request" in rule.get("timeouts", {}), "else the gateway's default (Envoy: 15 s)"


def test_every_websocket_route_outlasts_the_servers_pings(route, configured) -> None:
    """A socket carries a ping every WEBSOCKET_PING_INTERVAL; the gateway must not cut
    one that quiet, nor give a socket the HTTP deadline."""
    ping = configured.WEBSOCKET_PING_INTERVAL
    assert ping > 0, "without pings an idle socket is cut at the gateway's timeout"
    paths = websocket_paths()
    assert paths, "the project serves WebSockets"
    http = rule_for(route, "/")
    for path in paths:
        rule = rule_for(route, path)
        assert rule is not http, f"{path} takes the HTTP rule"
        timeout = seconds(rule["timeouts"]["request"])
        assert timeout > ping + configured.WEBSOCKET_PING_TIMEOUT, path


def test_the_routes_reach_only_the_services_http_port(routes, objects) -> None:
    service = objects["Service"]
    ports = {port["port"]: port for port in service["spec"]["ports"]}
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    metrics = {port["name"] for port in container["ports"] if port["name"] == "metrics"}
    assert metrics, "the pods have a metrics port the routes must not reach"
    backends = [
        backend
        for route in routes.values()
        for rule in route["spec"]["rules"]
        for backend in rule.get("backendRefs", [])
    ]
    assert backends
    for backend in backends:
        assert backend["name"] == service["metadata"]["name"]
        assert backend.get("kind", "Service") == "Service"
        assert ports[backend["port"]]["targetPort"] == "http"


def test_the_route_serves_the_allowed_host_over_https_and_redirects_http(
    routes, route, container_env
) -> None:
    ingress = yaml.safe_load((BASE / "ingress.yaml").read_text())
    (rule,) = ingress["spec"]["rules"]
    allowed = env.REGISTRY["DJANGO_ALLOWED_HOSTS"].parser.parse(
        container_env["DJANGO_ALLOWED_HOSTS"]
    )
    for each in routes.values():
        assert each["spec"]["hostnames"] == [rule["host"]]  # the Ingress's host
        assert set(each["spec"]["hostnames"]) <= set(allowed)  # and so an allowed origin
    assert [ref["sectionName"] for ref in route["spec"]["parentRefs"]] == ["https"]
    (redirect,) = (each for name, each in routes.items() if name != "django-app")
    assert [ref["sectionName"] for ref in redirect["spec"]["parentRefs"]] == ["http"]
    (redirect_rule,) = redirect["spec"]["rules"]
    (only,) = redirect_rule["filters"]
    assert only["type"] == "RequestRedirect"
    assert only["requestRedirect"]["scheme"] == "https"
    assert "backendRefs" not in redirect_rule


def test_no_route_retries_by_status(routes) -> None:
    """Envoy Gateway reads a `retry` with no codes as 503 and connection errors: the
    server's 503 refusals would come straight back, on another full pod."""
    for route in routes.values():
        for rule in route["spec"]["rules"]:
            assert "retry" not in rule


def test_the_docs_gateway_has_the_listeners_the_routes_attach_to(routes, docs_gateway) -> None:
    ingress = yaml.safe_load((BASE / "ingress.yaml").read_text())
    listeners = {listener["name"]: listener for listener in docs_gateway["spec"]["listeners"]}
    for route in routes.values():
        for parent in route["spec"]["parentRefs"]:
            assert parent["name"] == docs_gateway["metadata"]["name"]
            listener = listeners[parent["sectionName"]]
            assert listener["hostname"] in route["spec"]["hostnames"]
    https, http = listeners["https"], listeners["http"]
    assert (https["protocol"], https["port"], http["protocol"], http["port"]) == (
        "HTTPS",
        443,
        "HTTP",
        80,
    )
    (certificate,) = https["tls"]["certificateRefs"]
    assert certificate["name"] == ingress["spec"]["tls"][0]["secretName"]  # the same Secret


# Envoy Gateway's policy ----------------------------------------------------------------


def test_envoy_gateway_retries_only_what_never_reached_the_application(objects, route) -> None:
    """Envoy Gateway's own API (no package ships its schema: checked here by what it
    says). Its retry without `triggers` means 503 too; with them, only those."""
    policy = objects["BackendTrafficPolicy"]
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    assert policy["spec"]["targetRefs"] == [
        {"group": GATEWAY_API, "kind": "HTTPRoute", "name": route["metadata"]["name"]}
    ]
    retry = policy["spec"]["retry"]
    triggers = set(retry["retryOn"]["triggers"])
    assert triggers, "without triggers Envoy Gateway retries 503"
    assert triggers <= UNSEEN_FAILURES
    assert "httpStatusCodes" not in retry["retryOn"]
    assert 1 <= retry["numRetries"] <= 3


def test_envoy_gateway_drops_idle_connections_before_the_server_does(objects, configured) -> None:
    """Else it reuses a connection the server is closing (Envoy's default: 1 h idle)."""
    idle = objects["BackendTrafficPolicy"]["spec"]["timeout"]["http"]["connectionIdleTimeout"]
    assert configured.GUNICORN_KEEPALIVE > 0
    assert seconds(idle) < configured.GUNICORN_KEEPALIVE


def test_the_base_kustomization_names_every_component() -> None:
    text = (BASE / "kustomization.yaml").read_text()
    for component in sorted(Path(BASE / "components").iterdir()):
        assert f"components/{component.name}" in text, component.name
