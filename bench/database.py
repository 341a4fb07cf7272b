"""The benchmark's own PostgreSQL: a throw-away cluster, migrated and seeded.

``/health`` checks it and ``/api/items`` reads from it, so each contender does
real database work over loopback, as it would in a pod. The cluster is the one
the tests use too (``harness.postgres``): a free port, a temporary directory,
removed afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import psycopg

from harness.postgres import PostgresCluster, server_binaries

ITEMS = 20


def start_cluster() -> PostgresCluster:
    if server_binaries() is None:
        raise SystemExit(
            "bench: PostgreSQL server binaries not found (make system-packages installs them)"
        )
    cluster = PostgresCluster()
    try:
        cluster.start()
        cluster.create_app_database()
    except BaseException:
        cluster.remove()
        raise
    return cluster


def prepare(environ: Mapping[str, str]) -> None:
    """Migrate, collect static files (the admin page needs the manifest) and seed items."""
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *command], env=dict(environ), check=True)
    with psycopg.connect(_libpq_url(environ["DATABASE_URL"]), autocommit=True) as connection:
        connection.execute("DELETE FROM example_item")
        for number in range(1, ITEMS + 1):
            connection.execute(
                "INSERT INTO example_item (name, created) VALUES (%s, now())",
                (f"Item {number}",),
            )


def server_version(cluster: PostgresCluster) -> str:
    return cluster.execute("SHOW server_version")[0][0]


def _libpq_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)
