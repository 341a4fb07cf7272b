"""``python -m django_k8s_runtime check-env`` says what start-up says: the same line for
every problem (the server then refuses to start) and for every warning (it starts).

Each case runs the real ``gunicorn`` and the real ``check-env`` with one environment.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.support.server import GUNICORN_COMMAND, Server, free_port, run

CHECK_ENV = ["python", "-m", "django_k8s_runtime", "check-env"]
PASSWORD = "s3cret-never-shown"


def check_env(environ: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    return run(CHECK_ENV, environ, timeout=60)


def lines(output: str, kind: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"configuration {kind}:")]


METRICS = free_port()

REFUSED = [
    pytest.param(
        {"WEB_CONCURRENCY": "x", "GUNICORN_WORKERS": "2"},
        "configuration error: WEB_CONCURRENCY='x' is not valid: expected a whole number "
        "(Gunicorn reads it before any configuration; GUNICORN_WORKERS, when set, decides "
        "the worker count).",
        id="WEB_CONCURRENCY-with-GUNICORN_WORKERS",
    ),
    pytest.param(
        {"METRICS_PORT": str(METRICS), "PROMETHEUS_MULTIPROC_DIR": "/proc/metrics"},
        "configuration error: PROMETHEUS_MULTIPROC_DIR='/proc/metrics' is not valid: it is on "
        "the kernel's proc file system, where no metrics files can be made; name a directory "
        "on a tmpfs such as /dev/shm/metrics.",
        id="metrics-directory-under-proc",
    ),
    pytest.param(
        {"METRICS_PORT": str(METRICS), "GUNICORN_CMD_ARGS": f"-b 127.0.0.1:{METRICS}"},
        f"configuration error: GUNICORN_CMD_ARGS's --bind 127.0.0.1:{METRICS} leaves only the "
        f"metrics port (METRICS_PORT={METRICS}), which answers nothing but /metrics: the "
        "application would not be served; bind the application's port too.",
        id="bind-onto-the-metrics-port",
    ),
    pytest.param(
        {"METRICS_PORT": str(METRICS), "GUNICORN_CMD_ARGS": "-b 127.0.0.1:8000"},
        "configuration error: GUNICORN_CMD_ARGS's --bind 127.0.0.1:8000 replaces every "
        f"listener, the metrics port's too: METRICS_PORT={METRICS} would serve nothing; bind "
        f"it as well (--bind <host>:{METRICS}), or set METRICS_PORT=0.",
        id="bind-without-the-metrics-port",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "--timeout 0"},
        "configuration error: GUNICORN_CMD_ARGS sets --timeout 0, which GUNICORN_TIMEOUT would "
        "refuse: expected a whole number of seconds from 1 to 3600.",
        id="timeout-0",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "--workers many"},
        "configuration error: GUNICORN_CMD_ARGS='--workers many' is not valid: argument "
        "-w/--workers: invalid int value: 'many'; expected Gunicorn's own command-line "
        "options (`gunicorn --help`), or empty.",
        id="refused-by-gunicorns-parser",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "-k sync"},
        "configuration error: GUNICORN_CMD_ARGS sets --worker-class sync: the runtime serves "
        "only with its own worker, django_k8s_runtime.server.worker.UvicornWorker, which holds "
        "the request path, its bounds and its shutdown (under sync every request is answered "
        "500; under another ASGI worker none of the bounds holds); remove it.",
        id="worker-class-sync",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "--worker-class uvicorn_worker.UvicornWorker"},
        "configuration error: GUNICORN_CMD_ARGS sets --worker-class uvicorn_worker.UvicornWorker: "
        "the runtime serves only with its own worker, "
        "django_k8s_runtime.server.worker.UvicornWorker, which holds the request path, its "
        "bounds and its shutdown (under sync every request is answered 500; under another "
        "ASGI worker none of the bounds holds); remove it.",
        id="worker-class-plain-uvicorn",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "--reuse-port"},
        "configuration error: GUNICORN_CMD_ARGS sets --reuse-port: each worker then listens on "
        "a socket of its own with its own queue of connections (Gunicorn 24 and later), so the "
        "connections waiting on a worker that is recycled or stops are reset, and wait behind "
        "a busy worker while another is idle; remove it (the workers share the master's "
        "socket).",
        id="reuse-port",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "--timeout -5"},
        "configuration error: GUNICORN_CMD_ARGS='--timeout -5' is not valid: --timeout: Value "
        "must be positive: -5; expected Gunicorn's own command-line options (`gunicorn "
        "--help`), or empty.",
        id="refused-by-gunicorns-validator",
    ),
    pytest.param(
        {
            "DATABASE_URL": "postgres://app:secret@127.0.0.1:6432/app",
            "DB_POOLER": "pgbouncer",
            "GUNICORN_TIMEOUT": "10",
        },
        "configuration error: DB_REQUEST_TIMEOUTS=true (the default) cannot work with "
        "DB_POOLER=pgbouncer: PgBouncer refuses the session options it sends (and "
        "ignore_startup_parameters = options would drop them unsaid); set "
        "DB_REQUEST_TIMEOUTS=false and give PgBouncer's database entry "
        "connect_query='SET statement_timeout = 10000; SET idle_in_transaction_session_timeout "
        "= 10000' (the documentation's Database page).",
        id="request-timeouts-through-pgbouncer",
    ),
    pytest.param(
        {"DB_POOLER": "pgbouncer", "DB_REQUEST_TIMEOUTS": "false"},
        "configuration error: DB_POOLER=pgbouncer has no effect: DATABASE_URL is not a "
        "PostgreSQL URL; remove DB_POOLER.",
        id="pgbouncer-without-postgres",
    ),
    pytest.param(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_SERVICE_NAME": "shop",
            "OTEL_TRACES_SAMPLER": "sometimes",
        },
        "configuration error: OTEL_TRACES_SAMPLER='sometimes' is not valid: expected one of "
        "parentbased_always_on, parentbased_traceidratio, parentbased_always_off, always_on, "
        "traceidratio, always_off.",
        id="otel-sampler",
    ),
    pytest.param(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_SERVICE_NAME": "shop",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20s3cret",
        },
        "configuration error: OTEL_EXPORTER_OTLP_HEADERS is set, but the runtime does not "
        "read it: of OpenTelemetry's variables it reads those the documentation's "
        "Configuration page lists (Traces), and refuses the others rather than let the SDK "
        "read them unchecked; remove it.",
        id="otel-variable-not-read",
    ),
    pytest.param(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        "configuration error: OTEL_SERVICE_NAME is empty and OTEL_RESOURCE_ATTRIBUTES has no "
        "service.name: every span would say unknown_service; name the service "
        "(OTEL_SERVICE_NAME=shop).",
        id="otel-service-unnamed",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("environ", "expected"), REFUSED)
def test_start_up_and_check_env_refuse_alike_in_one_line(environ: dict, expected: str) -> None:
    started = run(GUNICORN_COMMAND, environ, timeout=60)
    output = (started.stdout + started.stderr).strip()
    assert started.returncode != 0, output
    assert output == expected
    checked = check_env(environ)
    assert checked.returncode == 1
    assert lines(checked.stdout, "error") == [expected], checked.stdout


def test_the_projects_problems_show_with_the_runtimes_in_production() -> None:
    """The documented command names no settings module (the project's ASGI module
    does): the project's variables used to be checked only once the runtime's were
    right."""
    environ = {"DJANGO_SETTINGS_MODULE": None, "GUNICORN_PORT": "http", "DJANGO_DEBUG": "maybe"}
    started = run(GUNICORN_COMMAND, environ, timeout=60)
    assert started.returncode != 0
    expected = [
        "configuration error: GUNICORN_PORT='http' is not valid: expected a whole number "
        "from 1 to 65535.",
        "configuration error: DJANGO_DEBUG='maybe' is not valid: expected true or false "
        "(also 1/0, yes/no, on/off).",
    ]
    assert (started.stdout + started.stderr).strip().splitlines() == expected
    checked = check_env({**environ, "DJANGO_SETTINGS_MODULE": "tests.site.settings"})
    assert lines(checked.stdout, "error") == expected


def test_check_env_says_when_the_projects_variables_were_not_checked() -> None:
    """Without DJANGO_SETTINGS_MODULE only the runtime's variables are known: a project's
    missing secret key passed as "configuration ok"."""
    environ = {"DJANGO_SETTINGS_MODULE": None, "DJANGO_SECRET_KEY": None}
    unchecked = check_env(environ)
    assert unchecked.returncode == 0
    assert unchecked.stdout.splitlines()[-2:] == [
        "configuration not checked: the project's own variables (its settings module "
        "declares them), as DJANGO_SETTINGS_MODULE is not set; set it, or pass --settings "
        "mysite.settings, to check them too.",
        "configuration ok",
    ]
    checked = check_env({**environ, "DJANGO_SETTINGS_MODULE": "tests.site.settings"})
    assert checked.returncode == 1
    assert "configuration not checked" not in checked.stdout
    assert lines(checked.stdout, "error")[0].startswith(
        "configuration error: DJANGO_SECRET_KEY is not set"
    )


WARNED = [
    pytest.param(
        {"GUNICORN_LIMIT_REQUEST_FIELDS": "3"},
        "configuration warning: GUNICORN_LIMIT_REQUEST_FIELDS=3 is fewer than the 4 header "
        "fields a kubelet's HTTP probe sends: every probe is answered 431 and the pod never "
        "becomes ready; keep Gunicorn's default of 100.",
        id="too-few-header-fields-for-the-probes",
    ),
    pytest.param(
        {"GUNICORN_FORWARDED_ALLOW_IPS": "*"},
        "configuration warning: GUNICORN_FORWARDED_ALLOW_IPS=* trusts X-Forwarded-For and "
        "X-Forwarded-Proto from every client: any client can claim another address (the "
        "access log, Django's REMOTE_ADDR) and https; name your ingress's network instead, "
        "e.g. 10.0.0.0/8.",
        id="forwarded-headers-from-anyone",
    ),
    pytest.param(
        {"GUNICORN_CMD_ARGS": "--forwarded-allow-ips *"},
        "configuration warning: GUNICORN_FORWARDED_ALLOW_IPS=* trusts X-Forwarded-For and "
        "X-Forwarded-Proto from every client: any client can claim another address (the "
        "access log, Django's REMOTE_ADDR) and https; name your ingress's network instead, "
        "e.g. 10.0.0.0/8.",
        id="forwarded-headers-from-anyone-by-GUNICORN_CMD_ARGS",
    ),
]


@pytest.mark.slow  # a server per case
@pytest.mark.parametrize(("environ", "expected"), WARNED)
def test_start_up_and_check_env_warn_alike_in_one_line(environ: dict, expected: str) -> None:
    checked = check_env(environ)
    assert checked.returncode == 0, checked.stdout
    assert lines(checked.stdout, "warning") == [expected]
    # Not waiting for /health/live: with 3 header fields no request gets through.
    server = Server({"GUNICORN_WORKERS": "1", **environ}).start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while "Booting worker" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    messages = [json.loads(line)["message"] for line in server.log_lines() if "{" in line[:1]]
    assert [m for m in messages if m.startswith("configuration warning")] == [expected]


@pytest.mark.slow
@pytest.mark.parametrize(
    "url",
    [
        f"postgres://app@db:5432/?password={PASSWORD}&sslmode=require",
        f"postgres://app@db:5432/?sslpassword={PASSWORD}",
        f"postgres://app:{PASSWORD}@db:5432/",
    ],
    ids=["password", "sslpassword", "userinfo"],
)
def test_a_password_in_the_database_url_is_never_printed(url: str) -> None:
    """A URL naming no database is refused by start-up, manage.py and check-env, each
    echoing the URL: the query string's passwords used to be printed."""
    environ = {"DATABASE_URL": url}
    outputs = [
        run(GUNICORN_COMMAND, environ, timeout=60),
        run(["python", "-m", "tests.site.manage", "check"], environ, timeout=60),
        check_env(environ),
    ]
    for result in outputs:
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert PASSWORD not in output, output
        assert "configuration error: DATABASE_URL='postgres://app" in output, output
        assert "***" in output, output


def test_check_env_lists_the_tracing_settings() -> None:
    """OpenTelemetry's variables the runtime reads, each with its value and source."""
    from django_k8s_runtime.env import REGISTRY, TRACING

    tracing = [name for name, variable in REGISTRY.items() if variable.section == TRACING]
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG"} <= set(tracing)
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    checked = check_env(environ)
    assert checked.returncode == 0, checked.stdout
    shown = {line.split()[0]: line.split()[1:] for line in checked.stdout.splitlines() if line}
    for name in tracing:
        assert name in shown
    assert shown["OTEL_EXPORTER_OTLP_ENDPOINT"] == [
        "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    assert shown["OTEL_TRACES_SAMPLER_ARG"] == ["0.1", "OTEL_TRACES_SAMPLER_ARG"]
    assert shown["OTEL_PROPAGATORS"] == ["tracecontext,baggage", "default"]


def test_the_body_limit_is_shown_with_its_size() -> None:
    """An operator reads the effective limit, not only a count of bytes."""
    shown = check_env({"REQUEST_MAX_BODY_SIZE": "104857600"}).stdout
    assert "REQUEST_MAX_BODY_SIZE" in shown
    line = next(line for line in shown.splitlines() if line.startswith("REQUEST_MAX_BODY_SIZE"))
    assert line.split()[1:] == ["104857600", "(100", "MiB)", "REQUEST_MAX_BODY_SIZE"]
    default = next(
        line for line in check_env({}).stdout.splitlines() if line.startswith("REQUEST_MAX")
    )
    assert default.split()[1:] == ["33554432", "(32", "MiB)", "default"]
