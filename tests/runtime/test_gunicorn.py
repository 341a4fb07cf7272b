"""The Gunicorn config module, exercised by starting the real gunicorn."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.server import GUNICORN_COMMAND, Server, run


def run_gunicorn(**environ: str | None) -> subprocess.CompletedProcess[str]:
    return run(GUNICORN_COMMAND, environ, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"GUNICORN_PORT": "http"},
            "configuration error: GUNICORN_PORT='http' is not valid: "
            "expected a whole number from 1 to 65535.",
        ),
        (
            {"GUNICORN_WORKERS": "0"},
            "configuration error: GUNICORN_WORKERS='0' is not valid: "
            "expected a whole number from 1 to 1024, or auto.",
        ),
        ({"GUNICORN_TIMEOUT": ""}, "configuration error: GUNICORN_TIMEOUT='' is not valid"),
        ({"GUNICORN_MAX_REQUESTS": "-1"}, "configuration error: GUNICORN_MAX_REQUESTS='-1'"),
        ({"GUNICORN_WORKERS": "auto3"}, "configuration error: GUNICORN_WORKERS='auto3'"),
        ({"LOG_FORMAT": "xml"}, "configuration error: LOG_FORMAT='xml' is not valid"),
        ({"DJANGO_SECRET_KEY": ""}, "configuration error: DJANGO_SECRET_KEY=<hidden> is not"),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/etc/passwd", "METRICS_PORT": "9000"},
            "configuration error: PROMETHEUS_MULTIPROC_DIR='/etc/passwd' is not valid: it "
            "exists and is not a directory",
        ),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/etc", "METRICS_PORT": "9000"},
            "configuration error: PROMETHEUS_MULTIPROC_DIR='/etc' is not valid: it holds entries "
            "other than metrics files",
        ),
        (
            {"DJANGO_ALLOWED_HOSTS": " , "},
            "configuration error: DJANGO_ALLOWED_HOSTS=' , ' is not valid: expected a "
            "comma-separated list of host names",
        ),
        (
            {"CACHE_URL": "notaurl", "HEALTH_CHECKS": "cache"},
            "configuration error: CACHE_URL='notaurl' is not valid: expected a redis://",
        ),
        (
            {"CACHE_URL": "redis://:s3cret@cache:port/0"},
            "configuration error: CACHE_URL='redis://:***@cache:port/0' is not valid",
        ),
        (
            {"WEB_CONCURRENCY": "x"},  # Gunicorn itself reads it, before any config module
            "configuration error: WEB_CONCURRENCY='x' is not valid: expected a whole number",
        ),
        (
            {"REQUEST_MAX_BODY_SIZE": "10MB"},
            "configuration error: REQUEST_MAX_BODY_SIZE='10MB' is not valid: expected a whole "
            "number of bytes",
        ),
    ],
)
def test_bad_input_stops_the_server_with_one_clear_line(environ: dict, expected: str) -> None:
    result = run_gunicorn(**environ)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert output.startswith(expected), output
    assert len(output.splitlines()) == 1, output


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    result = run_gunicorn(
        GUNICORN_PORT="http",
        LOG_FORMAT="xml",
        GUNICORN_MAX_REQUESTS_JITTER="10",
        DATABASE_URL="postgres://app:s3cret@db:5432/app",
        DB_SSLMODE="verify-full",
        DB_SSLROOTCERT="/nonexistent/ca.crt",
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert "s3cret" not in output
    assert [line.split("=")[0] for line in output.splitlines()] == [
        "configuration error: GUNICORN_PORT",
        "configuration error: LOG_FORMAT",
        "configuration error: GUNICORN_MAX_REQUESTS_JITTER",
        "configuration error: DB_SSLROOTCERT",
    ], output


def test_a_metrics_directory_with_metrics_off_is_refused_not_a_traceback() -> None:
    """It used to start serving metrics anyway, or die with FileNotFoundError."""
    result = run_gunicorn(METRICS_PORT="0", PROMETHEUS_MULTIPROC_DIR="/tmp/does-not-exist")
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert output == (
        "configuration error: PROMETHEUS_MULTIPROC_DIR='/tmp/does-not-exist' has no effect "
        "because METRICS_PORT=0 (metrics off); set METRICS_PORT or remove "
        "PROMETHEUS_MULTIPROC_DIR."
    )


def test_a_projects_rule_stops_the_start_in_one_line() -> None:
    """The test site's: no secret key, no start (the service's is tests/project's)."""
    result = run_gunicorn(DJANGO_SECRET_KEY=None)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert output.splitlines() == [output]
    assert output.startswith("configuration error: DJANGO_SECRET_KEY is not set")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environ", "workers"),
    [
        ({"GUNICORN_WORKERS": "3"}, 3),
        ({"WEB_CONCURRENCY": "2", "GUNICORN_WORKERS": None}, 2),
        ({"GUNICORN_WORKERS": "3", "GUNICORN_CMD_ARGS": "--workers 1"}, 1),
    ],
    ids=["GUNICORN_WORKERS", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS-overrides"],
)
def test_worker_count_comes_from_the_environment(environ: dict, workers: int) -> None:
    server = Server({k: v for k, v in environ.items() if v is not None})
    if environ.get("GUNICORN_WORKERS", "") is None:
        server.environ.pop("GUNICORN_WORKERS")
    with server:
        pids = server.wait_for_workers(workers)
        assert len(pids) == workers
        # Every worker runs the Uvicorn worker class: each one started a Uvicorn server.
        assert "Using worker: django_k8s_runtime.server.worker.UvicornWorker" in server.log()
        for pid in pids:
            assert f"Started server process [{pid}]" in server.log()
        response = server.get("/_test/hello")
        assert response.status_code == 200
        assert "server" not in response.headers  # the software is not advertised


@pytest.mark.slow
def test_port_and_host_come_from_the_environment() -> None:
    with Server({"GUNICORN_HOST": "::1"}) as server:
        assert f"Listening at: http://[::1]:{server.port}" in server.log()
        assert server.url("/") == f"http://[::1]:{server.port}/"
        assert server.get("/health/live").status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environ", "warning"),
    [
        (
            {"GUNICORN_GRACEFUL_TIMEOUT": "5", "GUNICORN_TIMEOUT": "30"},
            "configuration warning: GUNICORN_GRACEFUL_TIMEOUT=5 is shorter than "
            "GUNICORN_TIMEOUT=30",
        ),
        (
            {"GUNICORN_CMD_ARGS": "--graceful-timeout 4", "GUNICORN_TIMEOUT": "10"},
            "configuration warning: GUNICORN_GRACEFUL_TIMEOUT=4 is shorter than "
            "GUNICORN_TIMEOUT=10",
        ),
    ],
)
def test_legal_but_unwise_settings_get_one_warning_line(environ: dict, warning: str) -> None:
    with Server({"GUNICORN_WORKERS": "1", **environ}) as server:
        lines = [line for line in server.log_lines() if "configuration warning" in line]
    assert len(lines) == 1, lines
    assert warning in lines[0]


@pytest.mark.slow
def test_wise_settings_get_no_warning() -> None:
    with Server({"GUNICORN_WORKERS": "1"}) as server:
        assert "configuration warning" not in server.log()
