"""The reference manifests: valid Kubernetes, and the numbers agree with the server."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from config import env, validation

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
MARGIN_SECONDS = 5


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "deploy" / "kubernetes" / name).read_text())


@pytest.fixture(scope="module")
def pod() -> dict:
    return load("deployment.yaml")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container_env(pod) -> dict[str, str]:
    return {
        item["name"]: item.get("value", "from-a-secret") for item in pod["containers"][0]["env"]
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, version, strict=True)


def test_the_timing_budget_holds(pod, container_env) -> None:
    """terminationGracePeriodSeconds >= shutdown delay + graceful timeout + margin,
    else Kubernetes SIGKILLs the pod while requests are still finishing."""
    delay = env.GUNICORN_SHUTDOWN_DELAY.value(container_env)
    graceful = env.GUNICORN_GRACEFUL_TIMEOUT.value(container_env)
    assert pod["terminationGracePeriodSeconds"] >= delay + graceful + MARGIN_SECONDS
    # A request may run for the whole timeout; the graceful stop must let it finish.
    assert graceful >= env.GUNICORN_TIMEOUT.value(container_env)


def test_the_environment_in_the_manifest_is_valid(container_env) -> None:
    secrets = {
        "DJANGO_SECRET_KEY": "k8s-reference-manifest-placeholder-0123456789-abcdef",
        "DATABASE_URL": "postgres://app:secret@db:5432/app",
    }
    values = {**container_env, **secrets, "DB_SSLROOTCERT": "system"}  # the CA is mounted there
    validation.check(env.load(values))


def test_probes_use_the_right_endpoints_and_bounds(pod, container_env) -> None:
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    check_timeout = env.HEALTH_CHECK_TIMEOUT.value(container_env)
    assert container["readinessProbe"]["timeoutSeconds"] > check_timeout
    # Readiness notices a drain well within the shutdown delay... roughly: one period.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] <= env.GUNICORN_SHUTDOWN_DELAY.value(container_env)


def test_security_context_is_non_root_and_read_only(pod) -> None:
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= mounts
    assert container["resources"]["requests"]


def test_metrics_are_not_exposed_through_the_service() -> None:
    ports = load("service.yaml")["spec"]["ports"]
    assert [port["targetPort"] for port in ports] == ["http"]


def test_the_disruption_budget_leaves_room_to_drain() -> None:
    replicas = load("deployment.yaml")["spec"]["replicas"]
    assert load("pdb.yaml")["spec"]["minAvailable"] < replicas
