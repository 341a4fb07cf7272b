"""Scaling on saturation with KEDA (components/autoscaling-with-keda), rendered with the
base and the monitoring component: valid against KEDA's published schema, in the base
autoscaler's place and bounds, on the query and target the Prometheus adapter's
autoscaler uses (components/autoscaling-on-saturation)."""

from __future__ import annotations

import copy
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.project.deploy.rendering import (
    BASE,
    COMPONENTS,
    by_kind,
    published_schema_errors,
    render,
)
from tests.support.requirements import require_tool

ADAPTER = COMPONENTS / "autoscaling-on-saturation"


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, dict]:
    overlay = tmp_path_factory.mktemp("overlay")
    return by_kind(render(overlay, "monitoring", "autoscaling-with-keda"))


@pytest.fixture(scope="module")
def scaled(objects) -> dict:
    return objects["ScaledObject"]


@pytest.fixture(scope="module")
def triggers(scaled) -> dict[str, dict]:
    by_type = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
    assert sorted(by_type) == ["cpu", "prometheus"]
    return by_type


def load(path) -> dict:
    return yaml.safe_load(path.read_text())


def quantity(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_the_scaled_object_takes_the_autoscalers_place(objects) -> None:
    """One autoscaler for the Deployment: two would fight over its replicas."""
    assert sorted(objects) == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "Job",
        "PodDisruptionBudget",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "Service",
    ]
    version = kubernetes_validate.latest_version()
    for kind in ("Deployment", "ConfigMap"):
        kubernetes_validate.validate(objects[kind], version, strict=True)


@pytest.mark.slow
def test_the_scaled_object_is_valid_against_kedas_published_schema(scaled) -> None:
    assert published_schema_errors([scaled]) == {"ScaledObject/django-app": []}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda spec: spec["triggers"][0]["metadata"].update(value=70), "must be string"),
        (lambda spec: spec["triggers"][1].update(metricsType="Value"), "does not exist"),
        (lambda spec: spec.pop("scaleTargetRef"), "must have required property"),
    ],
    ids=["number-for-string", "unknown-field", "missing-target"],
)
def test_the_schema_check_finds_what_an_api_server_would_refuse(scaled, change, expected) -> None:
    broken = copy.deepcopy(scaled)
    change(broken["spec"])
    (errors,) = published_schema_errors([broken]).values()
    assert any(expected in error for error in errors), errors


def test_it_keeps_the_base_autoscalers_target_bounds_and_behaviour(objects, scaled) -> None:
    base = load(BASE / "hpa.yaml")
    deployment = objects["Deployment"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        base["spec"]["minReplicas"],
        base["spec"]["maxReplicas"],
    )
    config = spec["advanced"]["horizontalPodAutoscalerConfig"]
    assert config["behavior"] == base["spec"]["behavior"]
    # It adopts the live autoscaler by its name rather than making a second one.
    assert config["name"] == base["metadata"]["name"]
    annotations = scaled["metadata"]["annotations"]
    assert annotations["scaledobject.keda.sh/transfer-hpa-ownership"] == "true"


def test_it_scales_on_cpu_as_the_base_does(triggers) -> None:
    (metric,) = load(BASE / "hpa.yaml")["spec"]["metrics"]
    cpu = triggers["cpu"]
    assert cpu["metricType"] == metric["resource"]["target"]["type"]
    assert int(cpu["metadata"]["value"]) == metric["resource"]["target"]["averageUtilization"]


def test_it_scales_on_the_adapters_saturation_query_and_target(objects, triggers) -> None:
    """The query the adapter runs for the HPA, its namespace and selector filled in, on
    the recording rule the monitoring component defines; the same target, read the
    same way (Value: one number for all the pods)."""
    (rule,) = load(ADAPTER / "prometheus-adapter-rules.yaml")["external"]
    hpa = load(ADAPTER / "hpa.yaml")
    (external,) = [m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    prometheus = triggers["prometheus"]
    assert prometheus["metricType"] == external["target"]["type"] == "Value"
    assert float(prometheus["metadata"]["threshold"]) == quantity(external["target"]["value"])
    query = prometheus["metadata"]["query"]
    series = re.search(r"\(([\w:]+)\{", query).group(1)
    namespace = re.search(r'namespace="([^"]+)"', query).group(1)
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    matchers = (
        f'namespace="{namespace}",app_kubernetes_io_name="{pod_labels["app.kubernetes.io/name"]}"'
    )
    expected = (
        rule["metricsQuery"].replace("<<.Series>>", series).replace("<<.LabelMatchers>>", matchers)
    )
    assert query == expected
    assert re.fullmatch(rule["name"]["matches"], series)
    recorded = {
        each.get("record")
        for group in objects["PrometheusRule"]["spec"]["groups"]
        for each in group["rules"]
    }
    assert series in recorded
    assert prometheus["metadata"]["serverAddress"].startswith("http")


def test_the_query_parses(triggers, tmp_path) -> None:
    """promtool parses it, as the expression of a recording rule."""
    require_tool("promtool")
    query = triggers["prometheus"]["metadata"]["query"]
    rules = {"groups": [{"name": "keda", "rules": [{"record": "keda:query", "expr": query}]}]}
    (tmp_path / "query.yaml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", "query.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
