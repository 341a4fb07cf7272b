"""The production image, built from the real Dockerfile and run for real: a
non-root user on a read-only root file system, Gunicorn as PID 1 with the Uvicorn
worker class, every setting from the environment, stopped by signals."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.project.image.container import Container, image_config, inspect, podman, run_once
from tests.support.server import TEST_SECRET_KEY

# The first test builds the image (minutes on a fresh machine: the base, the wheels).
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]

GUNICORN = ["gunicorn", "-c", "python:django_k8s_runtime.gunicorn", "config.asgi:application"]

LOOK_INSIDE = """
import json, os, shutil
unwanted = [
    "/app/tests", "/app/harness", "/app/.git", "/app/.venv", "/app/.venvs", "/app/.tools",
    "/app/build", "/app/bench", "/app/scripts", "/app/db.sqlite3", "/app/.secret_key",
    "/app/uv.lock", "/app/Makefile", "/root/.cache", "/tmp/wheelhouse", "/tmp/requirements.txt",
    "/opt/venv/bin/pip", "/app/runtime",
]
import django_k8s_runtime
from importlib.metadata import version
installed = django_k8s_runtime.__file__.startswith("/opt/venv/")
print(json.dumps({
    "runtime": [version("django-k8s-runtime"), installed],
    "unwanted": [path for path in unwanted if os.path.lexists(path)],
    "compilers": [tool for tool in ("cc", "gcc", "c++", "clang", "make") if shutil.which(tool)],
    "static manifest": os.path.isfile("/app/staticfiles/staticfiles.json"),
}))
"""


def test_the_image_holds_the_service_and_nothing_else(image: str) -> None:
    config = image_config()["Config"]
    assert config["User"] == "10001:10001"  # numeric: runAsNonRoot can verify it
    assert config["Cmd"] == GUNICORN
    assert not config.get("Entrypoint")
    assert set(config["ExposedPorts"]) == {"8000/tcp", "9000/tcp"}
    assert not [item for item in config["Env"] if item.startswith("DJANGO_SECRET_KEY")]
    # As root and without the tmpfs, to see every file the image holds.
    result = run_once("python", "-c", LOOK_INSIDE, environ={}, options=("--user=0",))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "runtime": [runtime_version(), True],  # installed from its wheel, as an adopter's
        "unwanted": [],
        "compilers": [],
        "static manifest": True,
    }


def runtime_version() -> str:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[3] / "runtime" / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]["version"]


def test_a_bad_variable_stops_the_container_in_one_line(image: str) -> None:
    result = run_once(environ={"DJANGO_SECRET_KEY": TEST_SECRET_KEY, "GUNICORN_WORKERS": "0"})
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert output == (
        "configuration error: GUNICORN_WORKERS='0' is not valid: "
        "expected a whole number from 1 to 1024, or auto."
    )


@pytest.fixture(scope="module")
def server(database_url: str, figures: dict[str, str]) -> Iterator[Container]:
    """One container with settings that differ from every default it checks."""
    container = Container(
        {
            "DATABASE_URL": database_url,
            "GUNICORN_WORKERS": "3",
            "GUNICORN_HOST": "127.0.0.1",
            "GUNICORN_GRACEFUL_TIMEOUT": "20",
            "GUNICORN_SHUTDOWN_DELAY": "1",
        }
    )
    with container:
        seconds = container.wait_for_200("/health")
        figures["podman create"] = (
            f"{container.create_seconds:.2f} s (vfs storage copies the image)"
        )
        figures["podman start to first 200 on /health"] = (
            f"{seconds:.2f} s (3 workers, readiness checks PostgreSQL)"
        )
        yield container


def test_gunicorn_is_pid_1_as_the_unprivileged_user(server: Container) -> None:
    processes = {pid: args for pid, _, args in server.processes()}
    assert processes[1].endswith(" ".join(GUNICORN)), processes
    status = server.exec("cat", "/proc/1/status").stdout
    assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.MULTILINE), status


def test_the_environment_sets_workers_port_and_timeouts(server: Container) -> None:
    workers = server.wait_for_workers(3)
    assert len(workers) == 3
    log = server.logs()
    assert "Using worker: django_k8s_runtime.server.worker.UvicornWorker" in log
    listening = re.search(r"Listening at: (\S+) \(1\)", log)
    assert listening, log
    assert f"http://127.0.0.1:{server.port}" in listening.group(1).split(","), log
    assert "Shutdown budget: 1s delay + 20s graceful = 21s" in log
    for worker in workers:
        assert f"Started server process [{worker}]" in log


def test_logs_are_json_lines(server: Container) -> None:
    server.get("/api/hello", via_ingress=True)
    lines = [line for line in server.logs().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"level", "message"} <= set(record), line


def test_probes_answer_plain_http(server: Container) -> None:
    live = server.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = server.get("/health")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert [check["name"].split(":")[0] for check in checks] == ["database"]
    assert all(check["ok"] for check in checks)


def test_metrics_are_served_on_their_own_port(server: Container) -> None:
    # Workers share their numbers through files on /dev/shm, a tmpfs.
    metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text


def test_admin_static_files_are_served_with_far_future_caching(server: Container) -> None:
    page = server.get("/admin/login/", via_ingress=True)
    assert page.status_code == 200, page.text
    # The manifest storage names each file by its content's hash.
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.text)
    assert stylesheet, page.text
    css = server.get(stylesheet.group(1), via_ingress=True)
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "max-age=315360000" in css.headers["cache-control"]
    assert "immutable" in css.headers["cache-control"]
    assert css.headers.get("content-encoding") in ("br", "gzip")  # compressed at build time


def test_the_root_file_system_is_read_only(server: Container) -> None:
    assert inspect(server.name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    for path in ("/app/probe", "/etc/probe", "/opt/venv/probe"):
        refused = server.exec("touch", path, user="0")  # even root may not write
        assert refused.returncode != 0
        assert "Read-only file system" in refused.stderr
    assert server.exec("touch", "/tmp/probe").returncode == 0


@pytest.fixture(scope="module")
def stoppable(database_url: str) -> Iterator[Container]:
    """A container the signal tests start, and stop. Production's shutdown delay
    (GUNICORN_SHUTDOWN_DELAY, 5 s) is left as it is."""
    container = Container({"DATABASE_URL": database_url, "GUNICORN_WORKERS": "2"}).create()
    yield container
    container.remove()


def test_sigterm_stops_it_gracefully_with_exit_code_0(
    stoppable: Container, figures: dict[str, str]
) -> None:
    stoppable.start().wait_for_200("/health")
    started = time.monotonic()
    # podman stop sends SIGTERM, then SIGKILL after --time seconds.
    podman("stop", "--time=60", stoppable.name, timeout=90)
    elapsed = time.monotonic() - started
    code = stoppable.exit_code()
    figures["podman stop (SIGTERM)"] = (
        f"exit code {code} after {elapsed:.2f} s (the 5 s shutdown delay, then the graceful "
        "stop; podman would SIGKILL at 60 s)"
    )
    assert code == 0, stoppable.logs()
    assert 5 <= elapsed < 20, f"stopping took {elapsed:.1f}s"


def test_sigint_stops_it_quickly_with_exit_code_0(
    stoppable: Container, figures: dict[str, str]
) -> None:
    stoppable.start().wait_for_200("/health")
    started = time.monotonic()
    podman("kill", "--signal=INT", stoppable.name)
    code = stoppable.wait_exit()
    elapsed = time.monotonic() - started
    figures["podman kill -s INT"] = f"exit code {code} after {elapsed:.2f} s (no shutdown delay)"
    assert code == 0, stoppable.logs()
    assert elapsed < 5, f"stopping took {elapsed:.1f}s"
