"""TLS to a real PostgreSQL the tests start with their own CA and certificates."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness import wrk
from harness.postgres import APP_DATABASE, PostgresCluster, ServerTls, server_binaries
from tests.support import certs
from tests.support.requirements import require, require_tool
from tests.support.server import Server, run

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
CERT_USER = "certuser"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    require_tool("openssl")
    directory = tmp_path_factory.mktemp("pki")
    ca = certs.authority(directory, "ca")
    other_ca = certs.authority(directory, "other-ca")
    server = ca.issue("server", "localhost", dns=("localhost",), ips=("127.0.0.1",))
    wrong_name = ca.issue("wrong-name", "db.example.com", dns=("db.example.com",))
    client = ca.issue("client", CERT_USER)
    return {
        "ca": ca,
        "other_ca": other_ca,
        "server": server,
        "wrong_name": wrong_name,
        "client": client,
    }


@pytest.fixture(scope="module")
def tls_postgres(pki):
    """Accepts only TLS: passwords for `app`, client certificates for `certuser`."""
    require(server_binaries() is not None, "PostgreSQL server binaries are not installed")
    cert, key = pki["server"]
    cluster = PostgresCluster(
        tls=ServerTls(cert=cert, key=key, ca=pki["ca"].cert),
        hba=[
            f"hostssl all {CERT_USER} 127.0.0.1/32 cert",
            "hostssl all all 127.0.0.1/32 scram-sha-256",
        ],
    )
    with cluster:
        cluster.execute(f"CREATE ROLE {CERT_USER} LOGIN")
        yield cluster


def readiness(server: Server) -> httpx.Response:
    return httpx.get(server.url("/health"), timeout=10)


def failure_lines(server: Server) -> list[str]:
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    return [line["message"] for line in lines if "fails" in line["message"]]


def test_verify_full_with_the_right_ca_encrypts_every_session(tls_postgres, pki) -> None:
    environ = {
        "DATABASE_URL": tls_postgres.url(),
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": str(pki["ca"].cert),
    }
    migrate(environ)
    with Server(environ) as server:
        assert readiness(server).status_code == 200
        assert server.get("/_test/groups").status_code == 200  # the pool opens a session
        sessions = tls_postgres.execute(
            "SELECT s.ssl, s.version, s.cipher FROM pg_stat_ssl s "
            "JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'app'"
        )
    assert sessions, "the app had no session open"
    assert all(ssl for ssl, _, _ in sessions), sessions
    print(f"\napp sessions seen by PostgreSQL: {sorted(set(sessions))}")


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong-ca", "certificate verify failed"), ("wrong-name", "does not match host name")],
)
def test_an_untrusted_server_is_not_ready_and_the_log_says_why(pki, case, expected) -> None:
    cert, key = pki["wrong_name"] if case == "wrong-name" else pki["server"]
    ca = pki["other_ca"] if case == "wrong-ca" else pki["ca"]
    cluster = PostgresCluster(tls=ServerTls(cert=cert, key=key))
    with cluster:
        environ = {
            "DATABASE_URL": cluster.url(),
            "DB_SSLMODE": "verify-full",
            "DB_SSLROOTCERT": str(ca.cert),
            "GUNICORN_WORKERS": "1",
        }
        with Server(environ) as server:
            response = readiness(server)
            assert response.status_code == 503
            assert "certificate" not in response.text  # details go to the log only
            (line,) = failure_lines(server)
    assert expected in line, line
    assert "app-password" not in line
    print(f"\n{case}: {line}")


def test_plain_connections_to_a_tls_only_server_are_not_ready(tls_postgres) -> None:
    environ = {"DATABASE_URL": tls_postgres.url(), "DB_SSLMODE": "disable", "GUNICORN_WORKERS": "1"}
    with Server(environ) as server:
        assert readiness(server).status_code == 503
        (line,) = failure_lines(server)
    assert "no encryption" in line, line
    print(f"\nsslmode=disable: {line}")


def test_client_certificate_authentication(tls_postgres, pki) -> None:
    cert, key = pki["client"]
    url = tls_postgres.url(user=CERT_USER, password="unused")
    environ = {
        "DATABASE_URL": url,
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": str(pki["ca"].cert),
        "DB_SSLCERT": str(cert),
        "DB_SSLKEY": str(key),
        "GUNICORN_WORKERS": "1",
    }
    with Server(environ) as server:
        assert readiness(server).status_code == 200
    del environ["DB_SSLCERT"], environ["DB_SSLKEY"]
    with Server(environ) as server:
        assert readiness(server).status_code == 503
        (line,) = failure_lines(server)
    assert "certificate" in line, line


def test_connections_stay_within_workers_times_pool_max_under_load(tls_postgres, pki) -> None:
    require_tool("wrk")
    workers, pool_max = 2, 3
    environ = {
        "DATABASE_URL": tls_postgres.url(),
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": str(pki["ca"].cert),
        "GUNICORN_WORKERS": str(workers),
        "DB_POOL_MAX_SIZE": str(pool_max),
        "GUNICORN_ACCESS_LOG": "false",
    }
    migrate(environ)
    with Server(environ) as server:
        peak, stop = [0], threading.Event()

        def watch() -> None:
            while not stop.is_set():
                ((count,),) = tls_postgres.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = %s",
                    (APP_DATABASE,),
                )
                peak[0] = max(peak[0], count)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            # Each request holds a connection for 50 ms; 40 at once overrun the pools.
            result = wrk.run(
                server.url("/_test/db-sleep?s=0.05"),
                connections=40,
                seconds=8,
                headers={"x-forwarded-proto": "https"},
            )
        finally:
            stop.set()
            watcher.join()
    print(
        f"\n{result.requests} requests, {result.errors} failed; peak server connections "
        f"{peak[0]} (limit {workers} x {pool_max} = {workers * pool_max})"
    )
    assert result.errors == 0, result.output
    assert result.requests > 200
    assert peak[0] <= workers * pool_max
    # A pool did fill (the kernel may give one worker most connections), so the
    # per-worker bound was really under test.
    assert peak[0] >= pool_max


def migrate(environ: dict[str, str]) -> None:
    result = run(["python", "-m", "tests.site.manage", "migrate", "--noinput", "-v0"], environ)
    assert result.returncode == 0, result.stderr


def test_pki_fixture_files_exist(pki) -> None:
    assert all(Path(path).exists() for path in (*pki["server"], *pki["client"], pki["ca"].cert))


def test_migrate_against_an_untrusted_server_fails_in_one_line(tls_postgres, pki) -> None:
    """The migration Job: a wrong CA is named as the cause, at once, without a traceback."""
    result = run(
        ["python", "-m", "tests.site.manage", "migrate", "--noinput"],
        {
            "DATABASE_URL": tls_postgres.url(),
            "DB_SSLMODE": "verify-full",
            "DB_SSLROOTCERT": str(pki["other_ca"].cert),
        },
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "app-password" not in output
    assert len(output.splitlines()) == 1, output
    assert "TLS verification failed" in output, output
