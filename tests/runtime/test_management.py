"""A project's ``manage.py`` (the test site's, through the runtime's
``execute_from_command_line``) against a database it cannot use: one line, at once,
non-zero. That command is the migration Job run before every rollout.
"""

from __future__ import annotations

import time

import pytest

from tests.support.server import free_port, run

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-never-shown"


def migrate(**environ: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = run(["python", "-m", "tests.site.manage", "migrate", "--noinput"], environ, timeout=60)
    return result.returncode, (result.stdout + result.stderr).strip(), time.monotonic() - started


def assert_one_clear_line(output: str, *expected: str) -> None:
    assert "Traceback" not in output, output
    assert PASSWORD not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("database error: cannot connect to PostgreSQL at "), output
    for text in expected:
        assert text in output, output


def test_a_closed_port_fails_at_once_naming_the_database() -> None:
    port = free_port()
    code, output, seconds = migrate(
        DATABASE_URL=f"postgres://app:{PASSWORD}@127.0.0.1:{port}/shop", DB_CONNECT_TIMEOUT="3"
    )
    assert code != 0
    assert_one_clear_line(output, f"127.0.0.1:{port}/shop as app: refused")
    assert seconds < 3 + 10  # no pool retrying for DB_POOL_TIMEOUT; start-up included


def test_an_unknown_database_and_a_wrong_password_are_told_apart(postgres) -> None:
    code, output, _ = migrate(DATABASE_URL=postgres.url(database="nosuchdb"))
    assert code != 0
    assert_one_clear_line(output, "/nosuchdb as app: unknown database")
    code, output, _ = migrate(DATABASE_URL=postgres.url(password=PASSWORD))
    assert code != 0
    assert_one_clear_line(output, "authentication failed")


def test_a_reachable_database_migrates(postgres) -> None:
    code, output, _ = migrate(DATABASE_URL=postgres.url())
    assert code == 0, output
