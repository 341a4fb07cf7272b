"""The optional components: monitoring (PodMonitor, PrometheusRule, Grafana dashboard)
and autoscaling on saturation. Rendered with the base as kustomize renders them; the
rules and every PromQL query checked by promtool (its unit tests fire the alerts);
every metric named is one the runtime exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from django_k8s_runtime.observability.metrics import Metrics
from tests.project.deploy.rendering import BASE, COMPONENTS, by_kind, render
from tests.support.requirements import require_tool

MONITORING = COMPONENTS / "monitoring"
AUTOSCALING = COMPONENTS / "autoscaling-on-saturation"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
# Grafana's variables, as a query would see them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$namespace": "shop",
    "$app": "django-app",
    "${datasource}": "prometheus",
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rule_groups() -> list[dict]:
    return load(MONITORING / "prometheus-rule.yaml")["spec"]["groups"]


def rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((MONITORING / "dashboard.json").read_text())


def dashboard_queries() -> list[str]:
    queries = [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":  # Grafana's label_values(<selector>, <label>)
            selector = re.fullmatch(r"label_values\((.+), *\w+\)", variable["query"]["query"])
            assert selector, variable
            queries.append(selector.group(1))
    return queries


def adapter_rule() -> dict:
    (rule,) = load(AUTOSCALING / "prometheus-adapter-rules.yaml")["external"]
    return rule


def adapter_query() -> str:
    """The adapter's query as it runs for the HPA: its namespace and selector filled in."""
    return (
        adapter_rule()["metricsQuery"]
        .replace("<<.Series>>", "namespace_app:http_request_threads_saturation:ratio")
        .replace("<<.LabelMatchers>>", 'namespace="shop",app_kubernetes_io_name="django-app"')
    )


def grafana(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return query


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    require_tool("promtool")
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# The rules and the queries -----------------------------------------------------------


def test_the_rules_pass_promtool(tmp_path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_alerts_fire_as_their_unit_tests_expect(tmp_path) -> None:
    groups = rule_groups()
    for rule in (rule for group in groups for rule in group["rules"]):
        rule.pop("annotations", None)  # promtool compares annotations whole
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "alerts_test.yaml").write_text(ALERT_TESTS.read_text())
    result = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in rules() if "alert" in rule}, "every alert tested"


def test_every_dashboard_and_adapter_query_parses(tmp_path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    queries = [grafana(query) for query in dashboard_queries()] + [adapter_query()]
    checked = {
        "groups": [
            {
                "name": "queries",
                "rules": [{"record": f"query:{n}", "expr": q} for n, q in enumerate(queries)],
            }
        ]
    }
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(checked))
    result = promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(queries) > 20


def test_every_metric_named_is_one_the_runtime_exports_or_a_rule_records() -> None:
    exported = exported_series()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    kubelet = {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
    queries = [rule["expr"] for rule in rules()] + dashboard_queries() + [adapter_query()]
    named = {name for query in queries for name in metric_names(grafana(query))}
    assert named - exported - recorded - kubelet == set()
    # The check sees the names it must (it is not vacuous).
    assert {"http_request_threads_busy", "db_pool_wait_seconds_total"} <= named
    assert "namespace_app:http_request_threads_saturation:ratio" in named


def exported_series() -> set[str]:
    """Every series name the runtime's metrics produce."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for family in registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",),
        }[family.type]
        names |= {family.name + suffix for suffix in suffixes}
    return names


_FUNCTIONS_AND_KEYWORDS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"  # label lists
)


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query selects: identifiers that are not functions,
    keywords, label names (in braces or in by-lists), strings or durations."""
    query = re.sub(r'"[^"]*"', '""', query)  # strings
    query = re.sub(r"\{[^}]*\}", "{}", query)  # label matchers
    query = re.sub(r"\[[^\]]*\]", "[]", query)  # ranges
    query = _FUNCTIONS_AND_KEYWORDS.sub(" ", query)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", query):
        after = query[match.end() :].lstrip()
        if after.startswith("("):
            continue  # a function or an aggregation
        if match.group() in {"and", "or", "unless", "bool", "offset", "Inf", "NaN"}:
            continue
        names.add(match.group())
    return names


def test_the_dashboard_is_a_grafana_dashboard_with_every_panel_queried() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert variables == {"datasource", "namespace", "app"}
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            if "container_" not in target["expr"]:  # kubelet's own series have other labels
                assert 'app_kubernetes_io_name="$app"' in target["expr"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in panels)
    for subject in ("saturation", "5xx", "p99", "restarts by cause", "connection"):
        assert subject in titles


def test_the_adapter_serves_the_recording_rule_under_the_name_the_autoscaler_asks_for() -> None:
    rule = adapter_rule()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    (series,) = metric_names(rule["seriesQuery"])
    assert series in recorded
    assert re.fullmatch(rule["name"]["matches"], series)
    hpa = load(AUTOSCALING / "hpa.yaml")
    (external,) = [metric for metric in hpa["spec"]["metrics"] if metric["type"] == "External"]
    assert external["external"]["metric"]["name"] == rule["name"]["as"]
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}


# Rendered with the base -------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """The base with both components, as a project's kustomization that lists them
    renders it."""
    overlay = tmp_path_factory.mktemp("overlay")
    return by_kind(render(overlay, MONITORING.name, AUTOSCALING.name))


def test_the_components_render_with_the_base(rendered) -> None:
    assert sorted(rendered) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "Job",
        "PodDisruptionBudget",
        "PodMonitor",
        "PrometheusRule",
        "Service",
    ]
    version = kubernetes_validate.latest_version()
    for kind in ("ConfigMap", "HorizontalPodAutoscaler", "Deployment"):
        kubernetes_validate.validate(rendered[kind], version, strict=True)
    assert rendered["PrometheusRule"]["spec"]["groups"] == rule_groups()


def test_the_pod_monitor_scrapes_the_web_pods_metrics_port(rendered) -> None:
    monitor = rendered["PodMonitor"]["spec"]
    pod = rendered["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    job_labels = rendered["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not monitor["selector"]["matchLabels"].items() <= job_labels.items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    metrics_port = {item["name"]: item.get("value") for item in container["env"]}["METRICS_PORT"]
    assert ports[endpoint["port"]] == int(metrics_port)
    assert endpoint["path"] == "/metrics"
    # The label the rules, the dashboard and the autoscaler group by.
    assert monitor["podTargetLabels"] == ["app.kubernetes.io/name"]
    assert "app.kubernetes.io/name" in labels


def test_the_dashboard_is_given_to_grafanas_sidecar(rendered) -> None:
    config_map = rendered["ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = config_map["data"].values()
    assert json.loads(content) == dashboard()


def test_the_autoscaler_scales_on_cpu_and_on_thread_saturation(rendered) -> None:
    spec = rendered["HorizontalPodAutoscaler"]["spec"]
    kinds = sorted(metric["type"] for metric in spec["metrics"])
    assert kinds == ["External", "Resource"]
    (external,) = [metric["external"] for metric in spec["metrics"] if metric["type"] == "External"]
    target = external["target"]
    assert target["type"] == "Value"
    assert 0.5 <= _quantity(target["value"]) < 1, "below 1, or requests queue before it acts"
    selector = external["metric"]["selector"]["matchLabels"]
    pod_labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector == {"app_kubernetes_io_name": pod_labels["app.kubernetes.io/name"]}
    # The rest of the autoscaler is the base's.
    assert spec["minReplicas"] == load(BASE / "hpa.yaml")["spec"]["minReplicas"]
    assert spec["behavior"] == load(BASE / "hpa.yaml")["spec"]["behavior"]


def _quantity(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)
