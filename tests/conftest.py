"""Shared fixtures. Servers, databases and browsers are real; see tests/support/."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip with a reason on a laptop that lacks something; fail under CI=true,
    where a skipped test would be a test silently not run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    require(not missing, f"missing {', '.join(missing)} (make system-packages installs them)")


@pytest.fixture(scope="session", autouse=True)
def collected_static_files():
    """Collect static files once, as the image build does, for every test server."""
    import subprocess

    from tests.support.server import BIN, ROOT, base_environment

    subprocess.run(
        [str(BIN / "python"), "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=base_environment(),
        check=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL cluster of the suite's own, shared by tests that only read it."""
    from tests.support.postgres import PostgresCluster, server_binaries

    require(server_binaries() is not None, "PostgreSQL server binaries are not installed")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def own_postgres():
    """A cluster for one test that stops, restarts or reconfigures it."""
    from tests.support.postgres import PostgresCluster, server_binaries

    require(server_binaries() is not None, "PostgreSQL server binaries are not installed")
    with PostgresCluster() as cluster:
        yield cluster
