"""This service's own variables and rules (config/env.py) at start-up and in
``check-env``: the same line for every problem (the server then refuses to start) and
for every warning (it starts). The runtime's own are tests/runtime/test_check_env.py's.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.project.service import CHECK_ENV, GUNICORN_COMMAND, SETTINGS, service
from tests.support.server import run


def check_env(environ: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    return run(CHECK_ENV, {**SETTINGS, **environ}, timeout=60)


def lines(output: str, kind: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"configuration {kind}:")]


REFUSED = [
    pytest.param(
        {"DJANGO_CSRF_TRUSTED_ORIGINS": "shop.example.com"},
        "configuration error: DJANGO_CSRF_TRUSTED_ORIGINS='shop.example.com' is not valid: "
        "expected a comma-separated list of origins with their scheme, such as "
        "https://shop.example.com or https://*.example.com (or empty).",
        id="origin-without-scheme",
    ),
]


@pytest.mark.parametrize(("environ", "expected"), REFUSED)
def test_start_up_and_check_env_refuse_alike_in_one_line(environ: dict, expected: str) -> None:
    started = run(GUNICORN_COMMAND, {**SETTINGS, **environ}, timeout=60)
    output = (started.stdout + started.stderr).strip()
    assert started.returncode != 0, output
    assert output == expected
    checked = check_env(environ)
    assert checked.returncode == 1
    assert lines(checked.stdout, "error") == [expected], checked.stdout


def test_production_needs_a_secret_key() -> None:
    checked = check_env({"DJANGO_SECRET_KEY": None})
    assert checked.returncode == 1
    assert lines(checked.stdout, "error") == [
        "configuration error: DJANGO_SECRET_KEY is not set; production needs one (at least 50 "
        "random characters), e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    ]


def test_production_without_a_secret_key_refuses_to_start() -> None:
    result = run(GUNICORN_COMMAND, {**SETTINGS, "DJANGO_SECRET_KEY": None}, timeout=60)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert output.splitlines() == [output]
    assert output.startswith("configuration error: DJANGO_SECRET_KEY is not set")


def test_debug_needs_no_secret_key() -> None:
    checked = check_env({"DJANGO_SECRET_KEY": None, "DJANGO_DEBUG": "true"})
    assert checked.returncode == 0, checked.stdout
    assert lines(checked.stdout, "error") == []


WARNED = [
    pytest.param(
        {"DJANGO_ALLOWED_HOSTS": ""},
        "configuration warning: DJANGO_ALLOWED_HOSTS is empty: every request but the health "
        "probes is answered 400 while the pod reports ready; set the site's host names, e.g. "
        "DJANGO_ALLOWED_HOSTS=shop.example.com.",
        id="no-allowed-hosts",
    ),
    pytest.param(
        {"CHANNEL_LAYER_URL": "redis://127.0.0.1:1/0", "HEALTH_CHECKS": "database"},
        "configuration warning: CHANNEL_LAYER_URL is set but HEALTH_CHECKS does not check it: "
        "while its Redis is away the broadcast's sockets are closed (1012) and refused (503) "
        "and the pod stays ready; add channel_layer, e.g. HEALTH_CHECKS=database,channel_layer.",
        id="channel-layer-not-checked",
    ),
    pytest.param(
        {"DJANGO_DEBUG": "true"},
        "configuration warning: DJANGO_DEBUG=true: Django's debug page shows code, settings "
        "and the request to anyone whose request fails, and every SQL query is kept in "
        "memory; never in production (URL passwords are hidden from the page, nothing else "
        "is).",
        id="debug",
    ),
]


@pytest.mark.slow  # a server per case
@pytest.mark.parametrize(("environ", "expected"), WARNED)
def test_start_up_and_check_env_warn_alike_in_one_line(environ: dict, expected: str) -> None:
    checked = check_env(environ)
    assert checked.returncode == 0, checked.stdout
    assert lines(checked.stdout, "warning") == [expected]
    server = service({"GUNICORN_WORKERS": "1", **environ}).start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while "Booting worker" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    messages = [json.loads(line)["message"] for line in server.log_lines() if "{" in line[:1]]
    assert [m for m in messages if m.startswith("configuration warning")] == [expected]
