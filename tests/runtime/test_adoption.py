"""Adoption proven from outside: the runtime's wheel, a fresh virtualenv, a project
from ``django-admin startproject``, README's adoption diff applied, served.

Nothing of this repository is on the path of the processes started here: only the
wheel, its dependencies (at the versions uv.lock pins for the Django series this
test runs under: `make test-series` runs it once per series and Python) and the
new project, made by that series' own ``django-admin``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import django
import httpx
import pytest
from packaging.requirements import Requirement

from harness.processes import free_port
from tests.support.adoption import (
    ROOT,
    RUNTIME,
    UV,
    adoption_diff,
    build_wheel,
    changed_lines,
    clean_environment,
    install,
    locked_versions,
    run,
    wait_for,
)
from tests.support.requirements import require

pytestmark = [pytest.mark.slow, pytest.mark.series, pytest.mark.timeout(900)]

POD_IP = {"host": "10.0.0.7:8000"}  # the kubelet's probes come with the pod IP as Host
MAX_CHANGED_LINES = 10
ADMIN = {"username": "admin", "password": "an-adoption-test-password"}

SLOW_VIEW = """

# Added by the test, not by the adoption: a view slower than GUNICORN_TIMEOUT.
import time as _time  # noqa: E402

from django.http import HttpResponse  # noqa: E402
from django.urls import path as _path  # noqa: E402


def _slow(request):
    _time.sleep(5)
    return HttpResponse("late")


urlpatterns.append(_path("slow", _slow))
"""


WEBSOCKET_DIFF = "adoption-websocket-diff"  # the Channels form, on top of the plain one


def normalise(requirement: str) -> str:
    return str(Requirement(requirement))


@pytest.fixture(scope="module")
def adopted(tmp_path_factory) -> dict:
    require(UV.exists(), f"{UV} is missing (make venv installs it)")
    work = tmp_path_factory.mktemp("adoption")
    wheel, sdist = build_wheel(work / "dist")
    constraints = locked_versions(work / "constraints.txt")
    venv = install(work / "venv", constraints, str(wheel))
    python = venv / "bin" / "python"
    project = work / "project"
    project.mkdir()
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite", "."], project)
    diff = adoption_diff(ROOT / "README.md")
    (work / "adoption.diff").write_text(diff)
    run(["git", "apply", "-p1", str(work / "adoption.diff")], project)
    with (project / "mysite" / "urls.py").open("a") as urls:
        urls.write(SLOW_VIEW)
    manage = [python, "manage.py"]
    run([*manage, "migrate", "--noinput"], project, clean_environment())
    superuser = clean_environment(
        DJANGO_SUPERUSER_USERNAME=ADMIN["username"],
        DJANGO_SUPERUSER_PASSWORD=ADMIN["password"],
        DJANGO_SUPERUSER_EMAIL="admin@example.com",
    )
    run([*manage, "createsuperuser", "--noinput"], project, superuser)
    return {
        "venv": venv,
        "python": python,
        "project": project,
        "diff": diff,
        "wheel": wheel,
        "sdist": sdist,
        "constraints": constraints,
        "work": work,
    }


@pytest.fixture(scope="module")
def adopted_with_websockets(adopted: dict) -> dict:
    """The adopted project in the Channels form: the wheel with its websockets extra,
    in a virtualenv of its own, and README's second diff applied on top."""
    work = adopted["work"]
    venv = install(
        work / "venv-websockets", adopted["constraints"], f"{adopted['wheel']}[websockets]"
    )
    project = work / "project-websockets"
    shutil.copytree(adopted["project"], project)
    diff = adoption_diff(ROOT / "README.md", WEBSOCKET_DIFF)
    (work / "websocket.diff").write_text(diff)
    run(["git", "apply", "-p1", str(work / "websocket.diff")], project)
    return {**adopted, "venv": venv, "project": project, "diff": diff}


def gunicorn(adopted: dict, **variables: str) -> tuple[list[str], dict[str, str]]:
    command = [
        str(adopted["venv"] / "bin" / "gunicorn"),
        "-c",
        "python:django_k8s_runtime.gunicorn",
        "mysite.asgi:application",
    ]
    return command, clean_environment(**variables)


def test_the_adoption_changes_ten_lines_or_fewer(adopted: dict) -> None:
    lines = changed_lines(adopted["diff"])
    assert 0 < len(lines) <= MAX_CHANGED_LINES, lines
    # The package's own README carries the same instructions.
    assert adoption_diff(RUNTIME / "README.md") == adopted["diff"]
    websocket = adoption_diff(ROOT / "README.md", WEBSOCKET_DIFF)
    assert adoption_diff(RUNTIME / "README.md", WEBSOCKET_DIFF) == websocket
    # One line of asgi.py changes; the rest is the project's own routes, a new file.
    removed = [line for line in changed_lines(websocket) if line.startswith("-")]
    assert removed == ["-application = get_asgi_application()"]
    changed_files = [line[4:] for line in websocket.splitlines() if line.startswith("--- ")]
    assert changed_files == ["a/mysite/asgi.py", "/dev/null"]


def test_the_wheel_brings_exactly_the_runtimes_dependencies(adopted: dict) -> None:
    declared = tomllib.loads((RUNTIME / "pyproject.toml").read_text())["project"]
    probe = (
        "import importlib.metadata as m, json, django_k8s_runtime\n"
        "print(json.dumps({'requires': m.requires('django-k8s-runtime'),"
        " 'file': django_k8s_runtime.__file__,"
        " 'installed': sorted(d.metadata['Name'].lower() for d in m.distributions())}))"
    )
    found = json.loads(
        run([adopted["python"], "-c", probe], adopted["project"], clean_environment()).stdout
    )
    extras = [
        f'{req}; extra == "{name}"'
        for name, reqs in declared["optional-dependencies"].items()
        for req in reqs
    ]
    assert sorted(map(normalise, found["requires"])) == sorted(
        map(normalise, declared["dependencies"] + extras)
    )
    assert found["file"].startswith(str(adopted["venv"]))  # the wheel, not this checkout
    for tool in ("pytest", "ruff", "playwright", "granian", "matplotlib", "httpx"):
        assert tool not in found["installed"], f"{tool} came with the runtime"
    assert adopted["sdist"].stat().st_size > 0


def test_the_project_is_this_series_own(adopted: dict) -> None:
    """Made by the series' own django-admin, run on its locked release and this Python."""
    probe = "import django, sys; print(django.get_version(), '%d.%d' % sys.version_info[:2])"
    found = run([adopted["python"], "-c", probe], adopted["project"], clean_environment())
    assert found.stdout.split() == [django.get_version(), "{}.{}".format(*sys.version_info[:2])]
    settings = (adopted["project"] / "mysite" / "settings.py").read_text()
    assert f"'django-admin startproject' using Django {django.get_version()}." in settings


@contextlib.contextmanager
def serving(adopted: dict, **variables: str) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """The adopted project under Gunicorn, JSON logs to a file: its base URL, the
    master and the log. Killed on the way out if it is still running."""
    port = free_port()
    command, environ = gunicorn(
        adopted,
        GUNICORN_HOST="127.0.0.1",
        GUNICORN_PORT=str(port),
        GUNICORN_WORKERS="1",
        LOG_FORMAT="json",
        **variables,
    )
    log = adopted["project"] / f"server-{port}.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=adopted["project"],
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/health/live", timeout=1).status_code == 200, log)
        yield base, server, log
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


def json_lines(log: Path) -> list[dict]:
    text = log.read_text().splitlines()
    lines = [json.loads(line) for line in text if line.startswith("{")]
    assert len(lines) == len(text), "every log line is JSON"
    return lines


def test_the_adopted_project_is_served_with_everything_the_runtime_promises(
    adopted: dict,
) -> None:
    metrics_port = free_port()
    with serving(
        adopted,
        METRICS_PORT=str(metrics_port),
        GUNICORN_TIMEOUT="1",
        GUNICORN_SHUTDOWN_DELAY="3",
    ) as (base, server, log):
        assert httpx.get(f"{base}/health/live", headers=POD_IP).status_code == 200
        ready = httpx.get(f"{base}/health", headers=POD_IP)
        assert ready.status_code == 200, ready.text
        timed_out = httpx.get(f"{base}/slow", timeout=10)
        assert timed_out.status_code == 504
        request_id = timed_out.headers["x-request-id"]
        # Counted when the request ends: the view is cancelled after a short grace.
        counted = 'http_requests_total{method="GET",route="/slow",status="504"} 1.0'
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for(lambda: counted in httpx.get(metrics_url).text, log, seconds=10)
        assert httpx.get(f"{base}/metrics").status_code == 404  # never on the public port

        server.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert httpx.get(f"{base}/health", headers=POD_IP).status_code == 503  # draining
        assert httpx.get(f"{base}/health/live", headers=POD_IP).status_code == 200
        assert server.wait(timeout=60) == 0
    access = [
        line
        for line in json_lines(log)
        if line["logger"] == "django_k8s_runtime.access" and line["path"] == "/slow"
    ]
    assert [(line["status"], line["request_id"]) for line in access] == [(504, request_id)]


def test_the_admin_is_served_and_a_user_logs_in(adopted: dict) -> None:
    """With the default request timeout: logging in hashes the password, which can
    take over a second on a busy machine."""
    with serving(adopted, GUNICORN_SHUTDOWN_DELAY="0") as (base, server, log):
        assert log_in_to_the_admin(base) == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    access = [
        (line["method"], line["path"], line["status"])
        for line in json_lines(log)
        if line["logger"] == "django_k8s_runtime.access"
        and line["path"].startswith("/admin/")
        and line["request_id"]
    ]
    assert access == [
        ("GET", "/admin/login/?next=/admin/", 200),
        ("POST", "/admin/login/?next=/admin/", 302),
        ("GET", "/admin/", 200),
    ]


def log_in_to_the_admin(base: str) -> int:
    """The admin's login form, as a browser posts it (CSRF token and cookies, the
    session cookie set by the response), then the admin's index; its status."""
    with httpx.Client(base_url=base, timeout=10) as browser:
        form = browser.get("/admin/login/?next=/admin/")
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None, form.text
        logged_in = browser.post(
            "/admin/login/?next=/admin/",
            data={**ADMIN, "csrfmiddlewaretoken": token[1], "next": "/admin/"},
        )
        assert logged_in.status_code == 302, logged_in.text
        assert logged_in.headers["location"] == "/admin/"
        assert "sessionid" in browser.cookies
        index = browser.get("/admin/")
        assert "Site administration" in index.text, index.text
        return index.status_code


def test_a_bad_variable_is_refused_in_one_line(adopted: dict) -> None:
    for variable, value in (("GUNICORN_WORKERS", "x"), ("WEB_CONCURRENCY", "x")):
        command, environ = gunicorn(adopted, **{variable: value})
        result = subprocess.run(
            command,
            cwd=adopted["project"],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = (result.stdout + result.stderr).strip()
        assert result.returncode != 0
        assert "Traceback" not in output
        assert output.startswith(f"configuration error: {variable}='x' is not valid"), output
        assert len(output.splitlines()) == 1, output


def test_check_env_shows_the_configuration_and_refuses_a_mistake(adopted: dict) -> None:
    check = [str(adopted["python"]), "-m", "django_k8s_runtime", "check-env"]
    environ = clean_environment(
        DATABASE_URL="postgres://app:s3cret@db:5432/shop",
        GUNICORN_WORKERS="3",
        DJANGO_SETTINGS_MODULE="mysite.settings",
    )
    good = subprocess.run(
        check,
        cwd=adopted["project"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    shown = {line.split()[0]: line.split()[1:] for line in good.stdout.splitlines() if line}
    assert shown["GUNICORN_WORKERS"] == ["3", "GUNICORN_WORKERS"]
    assert shown["GUNICORN_PORT"] == ["8000", "default"]
    assert shown["DATABASE_URL"] == ["postgres://app:***@db:5432/shop", "DATABASE_URL"]
    assert "s3cret" not in good.stdout
    assert good.stdout.rstrip().endswith("configuration ok")
    bad = subprocess.run(
        check,
        cwd=adopted["project"],
        env={**environ, "GUNICORN_PORT": "http"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "configuration error: GUNICORN_PORT='http' is not valid" in bad.stdout


def test_manage_py_fails_in_one_line_when_the_database_cannot_be_reached(adopted: dict) -> None:
    environ = clean_environment(DATABASE_URL=f"postgres://app:s3cret@127.0.0.1:{free_port()}/shop")
    result = subprocess.run(
        [str(adopted["python"]), "manage.py", "migrate"],
        cwd=adopted["project"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1
    assert output.startswith("database error: cannot connect to PostgreSQL at 127.0.0.1:"), output
    assert "s3cret" not in output


def test_the_channels_form_serves_sockets_and_closes_them_with_1001(
    adopted_with_websockets: dict,
) -> None:
    from websockets.exceptions import ConnectionClosedOK, InvalidStatus
    from websockets.sync.client import connect

    port = free_port()
    command, environ = gunicorn(
        adopted_with_websockets,
        GUNICORN_HOST="127.0.0.1",
        GUNICORN_PORT=str(port),
        METRICS_PORT="0",
        GUNICORN_WORKERS="1",
        GUNICORN_SHUTDOWN_DELAY="1",
        DJANGO_SETTINGS_MODULE="mysite.settings",
        LOG_FORMAT="json",
    )
    log = adopted_with_websockets["project"] / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=adopted_with_websockets["project"],
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/health/live", timeout=1).status_code == 200, log)
        url = f"ws://localhost:{port}/ws/echo/"  # startproject's DEBUG allows localhost
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin="https://evil.example", proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(url, origin=f"http://localhost:{port}", proxy=None, open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            server.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv(timeout=30)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert '"close_code": 1001' in log.read_text()
