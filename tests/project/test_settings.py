"""Production settings: safe defaults, and `check --deploy` clean."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.server import run


def manage(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return run(
        ["python", "manage.py", *args], {"DJANGO_SETTINGS_MODULE": "config.settings", **environ}
    )


@pytest.mark.slow
def test_check_deploy_reports_nothing_for_a_production_environment(postgres) -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "DEBUG",
        DATABASE_URL=postgres.url(),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_production_settings_are_safe_by_default() -> None:
    script = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_PRELOAD, s.ALLOWED_HOSTS)"
    )
    result = manage("shell", "--no-imports", "-c", script, DJANGO_ALLOWED_HOSTS="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True True True 31536000 False []"


def test_a_management_command_reports_bad_input_in_one_line() -> None:
    result = manage("check", DJANGO_DEBUG="perhaps")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "configuration error: DJANGO_DEBUG='perhaps' is not valid: "
        "expected true or false (also 1/0, yes/no, on/off)."
    )
