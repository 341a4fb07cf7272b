"""Shared fixtures. Servers, databases and browsers are real; see tests/support/."""

from __future__ import annotations

import pytest

from tests.support.requirements import require


@pytest.fixture(scope="session", autouse=True)
def collected_static_files():
    """Collect static files once, as the image build does, for every test server."""
    import subprocess

    from tests.support.server import BIN, ROOT, base_environment

    subprocess.run(
        [str(BIN / "python"), "-m", "tests.site.manage", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=base_environment(),
        check=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL cluster of the suite's own, shared by tests that only read it."""
    from harness.postgres import PostgresCluster, server_binaries

    require(server_binaries() is not None, "PostgreSQL server binaries are not installed")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def own_postgres():
    """A cluster for one test that stops, restarts or reconfigures it."""
    from harness.postgres import PostgresCluster, server_binaries

    require(server_binaries() is not None, "PostgreSQL server binaries are not installed")
    with PostgresCluster() as cluster:
        yield cluster
