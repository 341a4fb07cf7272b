"""The reference manifests: valid Kubernetes, and the numbers agree with the server."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from django_k8s_runtime import env, validation
from django_k8s_runtime.server.cpu import CpuLimit, auto_workers
from tests.support.requirements import require_tool

ROOT = Path(__file__).resolve().parents[3]
DIRECTORY = ROOT / "deploy" / "kubernetes"
# Kubernetes objects, one or more per file; kustomization.yaml is kustomize's own.
MANIFESTS = sorted(p for p in DIRECTORY.glob("*.yaml") if p.name != "kustomization.yaml")
MARGIN_SECONDS = 5
EXPECTED_KINDS = [
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "Job",
    "PodDisruptionBudget",
    "Service",
]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# PostgreSQL's default max_connections, less superuser_reserved_connections.
POSTGRES_DEFAULT_CONNECTIONS = 100 - 3
# The secrets the manifests take from a Secret, for validating their environment.
SECRETS = {
    "DJANGO_SECRET_KEY": "k8s-reference-manifest-placeholder-0123456789-abcdef",
    "DATABASE_URL": "postgres://app:secret@db:5432/app",
}


def load(name: str) -> dict:
    return yaml.safe_load((DIRECTORY / name).read_text())


def env_entries(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def env_values(container: dict) -> dict[str, str]:
    return {
        name: item.get("value", "from-a-secret") for name, item in env_entries(container).items()
    }


def scaled(value: int | str, pods: int) -> int:
    """A PDB or rollout number, or a percentage of the pods (rounded up, as Kubernetes does)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(pods * int(value[:-1]) / 100)
    return int(value)


def disruptions_allowed(budget: dict, pods: int) -> int:
    if "minAvailable" in budget:
        return pods - scaled(budget["minAvailable"], pods)
    return scaled(budget["maxUnavailable"], pods)


def cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def shutdown_budget(web: dict) -> float:
    """Seconds a pod may take to stop: the grace period, or more if the server wants more."""
    configured = env.load(env_values(web["containers"][0]))
    needed = configured.GUNICORN_SHUTDOWN_DELAY + configured.GUNICORN_GRACEFUL_TIMEOUT
    return max(web.get("terminationGracePeriodSeconds", 30), needed)


@pytest.fixture(scope="module")
def pod() -> dict:
    return load("deployment.yaml")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container_env(pod) -> dict[str, str]:
    return env_values(pod["containers"][0])


@pytest.fixture(scope="module")
def configured(container_env) -> env.Snapshot:
    """The Deployment's configuration, as the server would read it."""
    return env.load(container_env)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, version, strict=True)


def test_the_timing_budget_holds(pod, configured) -> None:
    """terminationGracePeriodSeconds >= shutdown delay + graceful timeout + margin,
    else Kubernetes SIGKILLs the pod while requests are still finishing."""
    delay = configured.GUNICORN_SHUTDOWN_DELAY
    graceful = configured.GUNICORN_GRACEFUL_TIMEOUT
    assert pod["terminationGracePeriodSeconds"] >= delay + graceful + MARGIN_SECONDS
    # A request may run for the whole timeout; the graceful stop must let it finish.
    assert graceful >= configured.GUNICORN_TIMEOUT


def test_the_environment_in_the_manifest_is_valid(container_env) -> None:
    values = {**container_env, **SECRETS, "DB_SSLROOTCERT": "system"}  # the CA is mounted there
    validation.check(env.load(values))


def test_probes_use_the_right_endpoints_and_bounds(pod, configured) -> None:
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == configured.HEALTH_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == configured.HEALTH_LIVE_PATH
    assert container["startupProbe"]["httpGet"]["path"] == configured.HEALTH_LIVE_PATH
    check_timeout = configured.HEALTH_CHECK_TIMEOUT
    assert container["readinessProbe"]["timeoutSeconds"] > check_timeout
    # Readiness notices a drain well within the shutdown delay... roughly: one period.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] <= configured.GUNICORN_SHUTDOWN_DELAY


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


def test_tmp_holds_an_upload_at_the_limit_in_every_thread(pod, configured) -> None:
    """Django spools a body over FILE_UPLOAD_MAX_MEMORY_SIZE to /tmp and its upload
    handler writes the file there again: past the volume's sizeLimit the kubelet
    evicts the pod, every request on it lost."""
    (tmp,) = [volume for volume in pod["volumes"] if volume["name"] == "tmp"]
    cpu_limit = CpuLimit(cpus(pod["containers"][0]["resources"]["limits"]["cpu"]), "manifest")
    workers = auto_workers(cpu_limit)
    upload_mib = 2 * configured.REQUEST_MAX_BODY_SIZE / 1048576
    needed = workers * configured.GUNICORN_THREADS * upload_mib
    assert mebibytes(tmp["emptyDir"]["sizeLimit"]) >= needed


def test_metrics_are_not_exposed_through_the_service() -> None:
    ports = load("service.yaml")["spec"]["ports"]
    assert [port["targetPort"] for port in ports] == ["http"]


def test_websockets_need_no_session_affinity() -> None:
    """A socket stays on its pod anyway; affinity would pin reconnects to one pod."""
    assert load("service.yaml")["spec"]["sessionAffinity"] == "None"


def test_the_ingress_keeps_live_sockets_open_and_routes_to_the_service(
    container_env, configured
) -> None:
    ingress = load("ingress.yaml")
    annotations = ingress["metadata"]["annotations"]
    # ingress-nginx closes a connection silent this long in either direction; a live
    # socket is pinged (and answers) every WEBSOCKET_PING_INTERVAL.
    ping = configured.WEBSOCKET_PING_INTERVAL
    pong = configured.WEBSOCKET_PING_TIMEOUT
    assert ping > 0, "without pings an idle socket is cut at the ingress's timeout"
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{name}"]) > ping + pong
    size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size == f"{configured.REQUEST_MAX_BODY_SIZE // 1048576}m"
    service = load("service.yaml")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in env.REGISTRY["DJANGO_ALLOWED_HOSTS"].parser.parse(
        container_env["DJANGO_ALLOWED_HOSTS"]
    )  # and so an allowed WebSocket origin
    (backend_path,) = rule["http"]["paths"]
    backend = backend_path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in [port["name"] for port in service["spec"]["ports"]]
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]


def test_the_disruption_budget_leaves_room_to_drain() -> None:
    """The fewest pods the autoscaler keeps still leave the budget one to evict."""
    assert "replicas" not in load("deployment.yaml")["spec"], "the HPA owns the count"
    replicas = load("hpa.yaml")["spec"]["minReplicas"]
    assert load("pdb.yaml")["spec"]["minAvailable"] < replicas


# What `kubectl apply -k deploy/kubernetes` applies -------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    require_tool("kubectl")
    result = subprocess.run(
        ["kubectl", "kustomize", str(DIRECTORY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, dict]:
    by_kind = {document["kind"]: document for document in rendered}
    assert len(by_kind) == len(rendered), "one object of each kind"
    return by_kind


@pytest.fixture(scope="module")
def web(objects) -> dict:
    return objects["Deployment"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def job(objects) -> dict:
    return objects["Job"]["spec"]


def test_kustomization_lists_every_manifest() -> None:
    resources = load("kustomization.yaml")["resources"]
    assert sorted(resources) == [path.name for path in MANIFESTS]


def test_the_rendered_objects_are_valid_against_the_kubernetes_schema(rendered) -> None:
    version = kubernetes_validate.latest_version()
    for document in rendered:
        kubernetes_validate.validate(document, version, strict=True)
    assert sorted(document["kind"] for document in rendered) == EXPECTED_KINDS


def test_the_job_and_the_deployment_run_the_release_image(web, job) -> None:
    """One image, tagged in kustomization.yaml: an image name that does not match its
    `images:` entry would silently keep the tag written in the manifest."""
    (image,) = load("kustomization.yaml")["images"]
    release = f"{image.get('newName', image['name'])}:{image['newTag']}"
    assert [container["image"] for container in web["containers"]] == [release]
    assert [container["image"] for container in job["template"]["spec"]["containers"]] == [release]


def test_the_job_runs_migrate_within_bounds(job) -> None:
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod["restartPolicy"] == "Never"  # a retry is a new pod; the failed one's log stays
    assert not set(PROBES) & set(container), "a Job is neither served nor restarted midway"
    assert 1 <= job["backoffLimit"] <= 3, "a few retries, not a loop hammering the database"
    assert 60 <= job["activeDeadlineSeconds"] <= 3600
    assert job["ttlSecondsAfterFinished"] >= 3600, "long enough to read why it failed"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_the_job_has_the_deployment_security_context(web, job) -> None:
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"] == web["securityContext"]
    assert container["securityContext"] == web["containers"][0]["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts  # the root file system is read-only
    # A volume the Job shares with the Deployment is the same volume.
    web_volumes = {volume["name"]: volume for volume in web["volumes"]}
    for volume in pod["volumes"]:
        assert volume == web_volumes[volume["name"]]


def test_the_job_reaches_the_database_as_the_deployment_does(web, job) -> None:
    """Migrations run against the database the pods serve, the same way (TLS, CA)."""
    container = job["template"]["spec"]["containers"][0]
    job_env, web_env = env_entries(container), env_entries(web["containers"][0])
    for name, entry in job_env.items():
        assert entry == web_env.get(name), f"{name} differs from the Deployment's"
    needed = {"DJANGO_SECRET_KEY"} | {
        name for name in web_env if env.REGISTRY[name].section == env.DATABASE
    }
    assert needed <= set(job_env), f"the Job lacks {sorted(needed - set(job_env))}"
    # Files the settings name are mounted where they say.
    mounts = [mount["mountPath"] for mount in container["volumeMounts"]]
    for name in ("DB_SSLROOTCERT", "DB_SSLCERT", "DB_SSLKEY"):
        path = job_env.get(name, {}).get("value", "")
        if path.startswith("/"):
            assert any(path.startswith(mount + "/") for mount in mounts), f"{name}={path}"


def test_the_job_environment_is_valid(job) -> None:
    values = env_values(job["template"]["spec"]["containers"][0])
    validation.check(env.load({**values, **SECRETS, "DB_SSLROOTCERT": "system"}))


def test_only_the_web_pods_are_selected(objects, web, job) -> None:
    """The Service must not send traffic to the migration pod, nor the PDB count it."""
    web_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    job_labels = job["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": objects["Deployment"]["spec"]["selector"]["matchLabels"],
        "Service": objects["Service"]["spec"]["selector"],
        "PodDisruptionBudget": objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector.items() <= web_labels.items(), f"{kind} misses the web pods"
        assert not selector.items() <= job_labels.items(), f"{kind} selects the migration pod"


def test_the_autoscaler_scales_the_deployment_on_cpu_requests(objects, web) -> None:
    deployment, spec = objects["Deployment"], objects["HorizontalPodAutoscaler"]["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization"
    assert 50 <= target["averageUtilization"] <= 90
    # Utilisation is measured against the requests: every container needs one.
    for container in web["containers"]:
        assert cpus(container["resources"]["requests"]["cpu"]) > 0, container["name"]
    # A replica count in the Deployment would be reset on every apply, against the HPA.
    assert "replicas" not in deployment["spec"]


def test_the_autoscaler_minimum_leaves_the_budget_a_pod_to_evict(objects) -> None:
    """At its fewest pods a node drain can still evict one, else it blocks forever."""
    spec = objects["HorizontalPodAutoscaler"]["spec"]
    budget = objects["PodDisruptionBudget"]["spec"]
    assert disruptions_allowed(budget, spec["minReplicas"]) >= 1
    assert spec["minReplicas"] < spec["maxReplicas"]


def test_scaling_down_waits_longer_than_a_pod_takes_to_stop(objects, web) -> None:
    """A dip shorter than a pod's drain starts no drain; and pods leave one at a time,
    each after the previous one has had its whole shutdown budget."""
    budget = shutdown_budget(web)
    scale_down = objects["HorizontalPodAutoscaler"]["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] > budget
    assert scale_down["policies"], "without a policy Kubernetes may remove every extra pod at once"
    for policy in scale_down["policies"]:
        assert policy["periodSeconds"] > budget
        assert policy["type"] == "Pods"
        assert policy["value"] == 1


# A worker before it grows (RSS, shared pages included), and the master, measured:
# 55-75 MiB for a worker (98 with 256 async requests in flight), about 62 for the master.
FRESH_WORKER_MIB = 100
MASTER_MIB = 64


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_workers_are_recycled_before_the_pod_reaches_its_memory_limit(web) -> None:
    """Every worker at WORKER_MAX_MEMORY_MIB, one fresh worker replacing one of them,
    the master and the memory-backed /dev/shm fit the container's limit: the runtime
    recycles a worker that grows before the kernel's OOM killer ends the whole pod."""
    container = web["containers"][0]
    configured = env.load(env_values(container))
    limit = configured.WORKER_MAX_MEMORY_MIB
    assert limit, "the reference Deployment bounds its workers' memory"
    workers = configured.GUNICORN_WORKERS
    if workers == "auto":
        workers = auto_workers(CpuLimit(cpus(container["resources"]["limits"]["cpu"]), "limit"))
    shm = next(volume for volume in web["volumes"] if volume["name"] == "shm")["emptyDir"]
    assert shm["medium"] == "Memory"
    needed = workers * limit + FRESH_WORKER_MIB + MASTER_MIB + mebibytes(shm["sizeLimit"])
    assert needed <= mebibytes(container["resources"]["limits"]["memory"])
    assert limit >= 2 * FRESH_WORKER_MIB, "room to grow, or workers recycle all the time"


def test_the_database_connections_fit_postgres_defaults(objects, web, job) -> None:
    """At the most pods, with a rollout's surge pod and the migration Job, the pools
    open no more connections than a default PostgreSQL accepts."""
    container = web["containers"][0]
    configured = env.load(env_values(container))
    assert configured.DB_POOL, "without the pool the count has no bound"
    workers = configured.GUNICORN_WORKERS
    if workers == "auto":
        limit = cpus(container["resources"]["limits"]["cpu"])
        workers = auto_workers(CpuLimit(limit, "the manifest's CPU limit"))
    per_pod = workers * configured.DB_POOL_MAX_SIZE
    max_pods = objects["HorizontalPodAutoscaler"]["spec"]["maxReplicas"]
    surge = scaled(objects["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"], max_pods)
    migration = env.load(env_values(job["template"]["spec"]["containers"][0])).DB_POOL_MAX_SIZE
    assert (max_pods + surge) * per_pod + migration <= POSTGRES_DEFAULT_CONNECTIONS


def test_the_docs_give_the_order_with_these_names_and_numbers(rendered, objects, job) -> None:
    """Delete the last Job, apply the Job alone, wait for it (longer than it may run),
    then apply the rest and follow the rollout: with the names and label used here."""
    page = (ROOT / "docs" / "kubernetes.md").read_text()
    name = objects["Job"]["metadata"]["name"]
    deployment = objects["Deployment"]["metadata"]["name"]
    steps = [
        rf"kubectl delete job {name} --ignore-not-found",
        r"kubectl apply -k deploy/kubernetes -l (?P<key>[\w./-]+)=(?P<value>[\w.-]+)",
        rf"kubectl wait --for=condition=complete --timeout=(?P<timeout>\d+)s job/{name}\b",
        r"kubectl apply -k deploy/kubernetes(?= *(#|$))",
        rf"kubectl rollout status deployment/{deployment}\b",
    ]
    found = [re.search(step, page, re.MULTILINE) for step in steps]
    for step, match in zip(steps, found, strict=True):
        assert match, f"docs/kubernetes.md lacks {step!r}"
    assert [match.start() for match in found] == sorted(match.start() for match in found)
    selector = found[1]
    selected = [
        document["kind"]
        for document in rendered
        if document["metadata"].get("labels", {}).get(selector["key"]) == selector["value"]
    ]
    assert selected == ["Job"], "the first apply must create the migration Job alone"
    assert int(found[2]["timeout"]) > job["activeDeadlineSeconds"]
