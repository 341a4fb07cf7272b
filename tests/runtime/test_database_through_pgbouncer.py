"""The test site through PgBouncer in transaction mode, as the reference sidecar runs it:
Debian's pgbouncer with the component's own pgbouncer.ini (only addresses and file
paths changed), speaking TLS (verify-full) to a PostgreSQL the test starts, and the
real server with DB_POOLER=pgbouncer in front of it.

Queries, the pools (the workers' psycopg pools on PgBouncer's few server
connections), the bounds PgBouncer puts on every session in place of
DB_REQUEST_TIMEOUTS (which start-up refuses here, in one line), Django's chunked
reads without server-side cursors, the request timeout's cancel reaching the
running query through PgBouncer, migrations run as the migration Job runs them
(straight to PostgreSQL, a session of their own), and a drain that loses nothing
when PgBouncer stops after the application, as a native sidecar does.
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from harness.postgres import PostgresCluster, ServerTls, server_binaries
from tests.support import certs, pgbouncer
from tests.support.pgbouncer import PgBouncer
from tests.support.requirements import require, require_tool
from tests.support.server import Server, run

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SESSION_BOUND = "30s"  # the component's connect_query: GUNICORN_TIMEOUT of the Deployment


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> certs.Authority:
    require_tool("openssl")
    directory = tmp_path_factory.mktemp("pki")
    directory.chmod(0o755)
    return certs.authority(directory, "ca")


@pytest.fixture(scope="module")
def postgres(ca) -> Iterator[PostgresCluster]:
    """Accepts only TLS, as a managed PostgreSQL would."""
    require(server_binaries() is not None, "PostgreSQL server binaries are not installed")
    cert, key = ca.issue("server", "localhost", dns=("localhost",), ips=("127.0.0.1",))
    with PostgresCluster(
        tls=ServerTls(cert=cert, key=key), hba=["hostssl all all 127.0.0.1/32 scram-sha-256"]
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def bouncer(postgres, ca) -> Iterator[PgBouncer]:
    require(pgbouncer.binary() is not None, "pgbouncer is not installed")
    with PgBouncer(postgres, ca.cert) as running:
        yield running


def direct_environment(postgres: PostgresCluster, ca: certs.Authority) -> dict[str, str]:
    """Straight to PostgreSQL, as the migration Job connects."""
    return {
        "DATABASE_URL": postgres.url(),
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": str(ca.cert),
    }


def pooled_environment(bouncer: PgBouncer, **more: str) -> dict[str, str]:
    """What the component sets in the application container."""
    return {
        "DATABASE_URL": bouncer.url(),
        "DB_POOLER": "pgbouncer",
        "DB_REQUEST_TIMEOUTS": "false",
        "DB_SSLMODE": "disable",  # loopback in the pod; PgBouncer speaks TLS onwards
        "GUNICORN_WORKERS": "2",
        "DB_POOL_MIN_SIZE": "0",
        **more,
    }


@pytest.fixture(scope="module")
def migrated(postgres, ca) -> None:
    """Migrations as the Job runs them: straight to PostgreSQL, in a session of their
    own (they may use session state a transaction-mode pool would not keep)."""
    result = run(
        ["python", "-m", "tests.site.manage", "migrate", "--noinput"],
        direct_environment(postgres, ca),
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(bouncer, migrated) -> Iterator[Server]:
    with Server(pooled_environment(bouncer)) as running:
        yield running


def app_sessions(postgres: PostgresCluster) -> list[tuple[str, str]]:
    """The application user's sessions on PostgreSQL: PgBouncer's server connections."""
    return postgres.execute(
        "SELECT state, query FROM pg_stat_activity"
        " WHERE usename = 'app' AND pid <> pg_backend_pid()"
    )


def test_the_session_options_the_runtime_would_send_are_refused_by_pgbouncer(bouncer) -> None:
    """Why start-up refuses DB_REQUEST_TIMEOUTS with DB_POOLER=pgbouncer (the line is
    tests/runtime/test_check_env.py's): what it sends, PgBouncer turns away."""
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
        psycopg.connect(bouncer.url(), options="-c statement_timeout=30000", connect_timeout=5)


def test_queries_through_pgbouncer_each_session_bounded_by_its_connect_query(
    server, postgres
) -> None:
    assert server.get("/health", via_ingress=False).status_code == 200  # readiness: the database
    groups = server.get("/_test/groups")
    assert groups.status_code == 200, groups.text
    assert groups.json() == {"groups": []}
    # The bounds DB_REQUEST_TIMEOUTS would set, set by PgBouncer on every server session.
    with concurrent.futures.ThreadPoolExecutor(10) as clients:
        answers = list(clients.map(lambda _: server.get("/_test/db-settings").json(), range(30)))
    assert (
        answers
        == [
            {
                "statement_timeout": SESSION_BOUND,
                "idle_in_transaction_session_timeout": SESSION_BOUND,
            }
        ]
        * 30
    )
    # ...and the sessions reach PostgreSQL over TLS, from PgBouncer.
    encrypted = postgres.execute(
        "SELECT DISTINCT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)"
        " WHERE usename = 'app'"
    )
    assert encrypted == [(True,)]


def test_the_workers_pools_share_pgbouncers_few_server_connections(server, postgres) -> None:
    """2 workers x DB_POOL_MAX_SIZE 5 client connections, 20 requests holding a
    connection at once: PostgreSQL sees at most PgBouncer's default_pool_size (5)."""
    pool_size = int(pgbouncer.component_config()["pgbouncer"]["default_pool_size"])
    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(app_sessions(postgres)))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as clients:
            statuses = list(
                clients.map(lambda _: server.get("/_test/db-sleep?s=0.3").status_code, range(40))
            )
    finally:
        stop.set()
        watcher.join()
    assert statuses == [200] * 40
    assert 1 <= most <= pool_size


def test_querysets_read_in_chunks_without_server_side_cursors(server) -> None:
    """QuerySet.iterator(), a row at a time, by 10 requests at once: a server-side
    cursor (WITH HOLD) would be looked for on whichever session PgBouncer lends next."""
    with concurrent.futures.ThreadPoolExecutor(10) as clients:
        answers = list(clients.map(lambda _: server.get("/_test/db-iterate"), range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20
    (rows,) = {answer.json()["rows"] for answer in answers}
    assert rows > 1


def test_a_timed_out_views_query_is_cancelled_through_pgbouncer(
    bouncer, postgres, migrated
) -> None:
    environ = pooled_environment(
        bouncer,
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="1",
        GUNICORN_TIMEOUT="3",
        DB_POOL_MAX_SIZE="1",
    )
    with Server(environ) as server:
        started = time.monotonic()
        response = server.get("/_test/db-sleep?s=120")
        answered = time.monotonic()
        assert response.status_code == 504
        assert answered - started < 3 + 2

        def sleeping() -> bool:
            # An idle session keeps its last query in pg_stat_activity: only a running one counts.
            return any(
                state == "active" and "pg_sleep" in query for state, query in app_sessions(postgres)
            )

        while sleeping():
            assert time.monotonic() - answered < 3, f"still running on PostgreSQL:\n{server.log()}"
            time.sleep(0.05)
        # Logged once the cancel is acknowledged, which may be after PostgreSQL has acted.
        deadline = time.monotonic() + 5
        while "cancelled the query of a request past its deadline" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        # The one thread and its one pooled connection serve again at once.
        again = server.get("/_test/db-ping")
        assert again.status_code == 200
        assert again.elapsed.total_seconds() < 2


def test_a_drain_loses_nothing_when_pgbouncer_stops_after_the_application(
    postgres, ca, migrated
) -> None:
    """The order a native sidecar gets: SIGTERM to the application, which serves out
    its requests (each holding a database connection) and exits; only then SIGTERM
    to PgBouncer, which has no client left and exits at once."""
    with PgBouncer(postgres, ca.cert) as own_bouncer:
        environ = pooled_environment(
            own_bouncer, GUNICORN_SHUTDOWN_DELAY="1", GUNICORN_GRACEFUL_TIMEOUT="20"
        )
        server = Server(environ).start()
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as clients:
                pending = [clients.submit(server.get, "/_test/db-sleep?s=3") for _ in range(8)]
                time.sleep(0.5)  # all of them holding a connection
                server.signal(signal.SIGTERM)
                statuses = [future.result().status_code for future in pending]
            assert statuses == [200] * 8
            assert server.wait(timeout=30) == 0
        finally:
            server.stop()
        own_bouncer.signal(signal.SIGTERM)
        stopped = time.monotonic()
        own_bouncer.wait(timeout=10)  # 1.18 calls its SIGTERM exit a "fast exit", status 1
        assert time.monotonic() - stopped < 2, "no client left to wait for"
    errors = [line for line in server.log_lines() if '"level": "ERROR"' in line]
    assert errors == []
