"""The PgBouncer sidecar component, rendered with the base as `kubectl kustomize`
renders it: valid Kubernetes, a native sidecar (started before the application,
stopped after it), and its pgbouncer.ini agreeing with the application's settings.
tests/runtime/test_database_through_pgbouncer.py runs the service through that same
pgbouncer.ini."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from django_k8s_runtime import env, validation
from django_k8s_runtime.server.cpu import CpuLimit, auto_workers
from tests.support.pgbouncer import COMPONENT_INI, component_config
from tests.support.requirements import require, require_tool

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "deploy" / "kubernetes"
SIDECAR = BASE / "components" / "pgbouncer-sidecar"
# PostgreSQL's default max_connections, less superuser_reserved_connections.
POSTGRES_DEFAULT_CONNECTIONS = 100 - 3
# What the Secrets hold, for validating the environment (docs/database.md).
SECRETS = {
    "DJANGO_SECRET_KEY": "k8s-reference-manifest-placeholder-0123456789-abcdef",
    "DATABASE_URL": "postgres://app:secret@127.0.0.1:6432/app",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    """The base with the component, as a project's kustomization that lists it renders
    it (kustomize refuses absolute paths: the overlay names them relatively)."""
    require_tool("kubectl")
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(BASE, overlay)],
                "components": [os.path.relpath(SIDECAR, overlay)],
            }
        )
    )
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    require(
        "components" not in result.stderr,
        f"this kubectl's kustomize has no components (kubectl 1.21+): {result.stderr[:200]}",
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, dict]:
    by_kind = {document["kind"]: document for document in rendered}
    assert len(by_kind) == len(rendered), "one object of each kind"
    return by_kind


@pytest.fixture(scope="module")
def pod(objects) -> dict:
    return objects["Deployment"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def sidecar(pod) -> dict:
    (container,) = pod["initContainers"]
    return container


@pytest.fixture(scope="module")
def app(pod) -> dict:
    (container,) = pod["containers"]
    return container


def values(container: dict) -> dict[str, str]:
    return {item["name"]: item.get("value", "from-a-secret") for item in container["env"]}


def cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def ini() -> dict[str, dict[str, str]]:
    config = component_config()
    return {name: dict(config[name]) for name in config.sections()}


def mounted(container: dict, path: str) -> bool:
    return any(path.startswith(mount["mountPath"] + "/") for mount in container["volumeMounts"])


def test_every_object_is_valid_against_the_kubernetes_schema(rendered) -> None:
    version = kubernetes_validate.latest_version()
    for document in rendered:
        kubernetes_validate.validate(document, version, strict=True)
    assert sorted(document["kind"] for document in rendered) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "Job",
        "PodDisruptionBudget",
        "Service",
    ]


def test_pgbouncer_is_a_native_sidecar_started_before_the_application(sidecar) -> None:
    """An init container that keeps running (restartPolicy: Always): the kubelet starts
    the application once its startup probe passes, and stops it only after the
    application has exited, so a drain's requests keep their database."""
    assert sidecar["name"] == "pgbouncer"
    assert sidecar["restartPolicy"] == "Always"
    port = {p["name"]: p["containerPort"] for p in sidecar["ports"]}["pgbouncer"]
    assert sidecar["startupProbe"]["tcpSocket"]["port"] in ("pgbouncer", port)
    # PgBouncer is PID 1 and gets the kubelet's SIGTERM itself, not a shell.
    assert Path(sidecar["command"][0]).name == "pgbouncer"
    assert sidecar["command"][1:] == ["/etc/pgbouncer/pgbouncer.ini"]
    assert mounted(sidecar, sidecar["command"][1])


def test_the_sidecar_is_as_locked_down_as_the_application(sidecar, app) -> None:
    assert sidecar["securityContext"] == app["securityContext"]
    assert sidecar["resources"]["requests"]
    assert sidecar["resources"]["limits"]["memory"]


def test_the_config_map_mounted_is_the_component_pgbouncer_ini(objects, pod, sidecar) -> None:
    config_map = objects["ConfigMap"]
    assert config_map["data"] == {"pgbouncer.ini": COMPONENT_INI.read_text()}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (mount,) = [m for m in sidecar["volumeMounts"] if m["mountPath"] == "/etc/pgbouncer"]
    # kustomize's hashed name: a changed pgbouncer.ini rolls the pods.
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert re.fullmatch(r"django-app-pgbouncer-\w+", config_map["metadata"]["name"])


def test_pgbouncer_pools_transactions_on_the_pods_loopback(sidecar) -> None:
    settings = ini()["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert settings["listen_addr"] == "127.0.0.1"
    port = {p["name"]: p["containerPort"] for p in sidecar["ports"]}["pgbouncer"]
    assert int(settings["listen_port"]) == port
    assert settings["unix_socket_dir"] == "", "no socket file on a read-only root file system"
    assert mounted(sidecar, settings["auth_file"])


def test_pgbouncer_verifies_postgres_as_the_application_did_without_it(pod, sidecar) -> None:
    settings = ini()["pgbouncer"]
    assert settings["server_tls_sslmode"] == "verify-full"
    assert mounted(sidecar, settings["server_tls_ca_file"])
    base = yaml.safe_load((BASE / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    base_env = values(base["containers"][0])
    assert settings["server_tls_ca_file"] == base_env["DB_SSLROOTCERT"]


def test_the_application_goes_through_pgbouncer(app, sidecar) -> None:
    environment = values(app)
    assert environment["DB_POOLER"] == "pgbouncer"
    assert environment["DB_REQUEST_TIMEOUTS"] == "false"
    assert "DB_SSLROOTCERT" not in environment
    url = next(item for item in app["env"] if item["name"] == "DATABASE_URL")
    assert url["valueFrom"]["secretKeyRef"] == {
        "name": "django-app",
        "key": "pgbouncer-database-url",
    }
    validation.check(env.load({**environment, **SECRETS}))
    assert f":{ini()['pgbouncer']['listen_port']}/" in SECRETS["DATABASE_URL"]


def test_each_session_is_bounded_by_the_request_timeout(app) -> None:
    """What DB_REQUEST_TIMEOUTS would send, PgBouncer sets on every server connection."""
    timeout_ms = env.load(values(app)).GUNICORN_TIMEOUT * 1000
    (entry,) = ini()["databases"].values()
    (query,) = re.findall(r"connect_query='([^']*)'", entry)
    settings = dict(re.findall(r"SET (\w+) = (\d+)", query))
    assert settings == {
        "statement_timeout": str(timeout_ms),
        "idle_in_transaction_session_timeout": str(timeout_ms),
    }


def test_migrations_keep_a_session_of_their_own(objects) -> None:
    """The Job connects to PostgreSQL itself, not through the pods' PgBouncer."""
    (container,) = objects["Job"]["spec"]["template"]["spec"]["containers"]
    environment = {item["name"]: item for item in container["env"]}
    assert environment["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert "DB_POOLER" not in environment
    assert "initContainers" not in objects["Job"]["spec"]["template"]["spec"]


def test_the_connections_fit_postgres_defaults_and_pgbouncer(objects, app) -> None:
    """PostgreSQL sees PgBouncer's pool per pod, not the workers' pools; PgBouncer takes
    every client connection a pod's workers and readiness checks open."""
    settings = ini()["pgbouncer"]
    configured = env.load(values(app))
    workers = auto_workers(CpuLimit(cpus(app["resources"]["limits"]["cpu"]), "the limit"))
    assert workers * (configured.DB_POOL_MAX_SIZE + 1) <= int(settings["max_client_conn"])
    max_pods = objects["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] + 1  # a surge pod
    (job,) = objects["Job"]["spec"]["template"]["spec"]["containers"]
    migration = env.load({item["name"]: item.get("value", "") for item in job["env"]})
    total = max_pods * int(settings["default_pool_size"]) + migration.DB_POOL_MAX_SIZE
    assert total <= POSTGRES_DEFAULT_CONNECTIONS


def test_the_docs_name_the_secrets_the_component_reads(pod) -> None:
    page = (ROOT / "docs" / "database.md").read_text()
    secret = next(v for v in pod["volumes"] if "secret" in v)["secret"]["secretName"]
    assert secret in page
    assert "pgbouncer-database-url" in page
    assert "components/pgbouncer-sidecar" in page
