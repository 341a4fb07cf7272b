"""DATABASES from DATABASE_URL and DB_*: TLS options checked at start-up, pooling."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from django_k8s_runtime import env, validation
from django_k8s_runtime.database import database_problems as problems
from django_k8s_runtime.database import default_database
from django_k8s_runtime.env import ConfigError

BASE = Path("/srv/app")
PG = "postgres://app:s3cret@db.internal:5432/shop"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    cert = tmp_path / "client.crt"
    cert.write_text("CERT")
    key = tmp_path / "client.key"
    key.write_text("KEY")
    key.chmod(0o600)
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}


def database(**environ: str) -> dict:
    settings = env.load(environ)
    assert problems(settings) == []
    return default_database(BASE, settings)


def refused(fragment: str, **environ: str) -> str:
    """The one line start-up prints for this environment's database problem."""
    with pytest.raises(ConfigError) as caught:
        validation.check(env.load({"DJANGO_DEBUG": "true", **environ}))
    message = str(caught.value.code)
    assert "\n" not in message
    assert fragment in message, message
    assert "s3cret" not in message  # the password is never echoed
    return message


def test_the_quickstart_default_is_a_sqlite_file_beside_the_code() -> None:
    config = database()
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(BASE / "db.sqlite3")


def test_postgres_url_with_pool_and_no_persistent_connections() -> None:
    config = database(DATABASE_URL=PG)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.internal", 5432, "shop")
    assert config["CONN_MAX_AGE"] == 0
    assert config["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 5, "timeout": 10.0}
    assert config["OPTIONS"]["connect_timeout"] == 5


def test_pool_sizes_and_switch_come_from_the_environment() -> None:
    config = database(
        DATABASE_URL=PG, DB_POOL_MIN_SIZE="2", DB_POOL_MAX_SIZE="8", DB_POOL_TIMEOUT="3"
    )
    assert config["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 8, "timeout": 3.0}
    assert "pool" not in database(DATABASE_URL=PG, DB_POOL="false")["OPTIONS"]


def test_verify_full_from_the_url_is_kept_not_downgraded(files) -> None:
    config = database(DATABASE_URL=f"{PG}?sslmode=verify-full&sslrootcert={files['ca']}")
    assert config["OPTIONS"]["sslmode"] == "verify-full"
    assert config["OPTIONS"]["sslrootcert"] == files["ca"]


def test_variables_override_the_url(files) -> None:
    config = database(
        DATABASE_URL=f"{PG}?sslmode=require",
        DB_SSLMODE="verify-full",
        DB_SSLROOTCERT=files["ca"],
        DB_SSLCERT=files["cert"],
        DB_SSLKEY=files["key"],
    )
    assert config["OPTIONS"]["sslmode"] == "verify-full"
    assert config["OPTIONS"]["sslcert"] == files["cert"]
    assert config["OPTIONS"]["sslkey"] == files["key"]


def test_system_roots_are_accepted_with_a_recent_libpq() -> None:
    config = database(DATABASE_URL=PG, DB_SSLMODE="verify-full", DB_SSLROOTCERT="system")
    assert config["OPTIONS"]["sslrootcert"] == "system"


def test_unknown_sslmode_in_the_url() -> None:
    refused(
        "DATABASE_URL's sslmode='verify' is not valid: expected one of disable, allow, "
        "prefer, require, verify-ca, verify-full.",
        DATABASE_URL=f"{PG}?sslmode=verify",
    )


def test_unknown_sslmode_in_the_variable() -> None:
    refused("DB_SSLMODE='on' is not valid", DATABASE_URL=PG, DB_SSLMODE="on")


def test_verifying_without_a_ca_is_refused(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    refused(
        "DB_SSLMODE=verify-full needs the certificate authority: set DB_SSLROOTCERT",
        DATABASE_URL=PG,
        DB_SSLMODE="verify-full",
    )


def test_missing_certificate_file() -> None:
    refused(
        "DB_SSLROOTCERT='/nonexistent/ca.crt' is not valid: no such file.",
        DATABASE_URL=PG,
        DB_SSLMODE="verify-full",
        DB_SSLROOTCERT="/nonexistent/ca.crt",
    )


def test_unreadable_certificate_file() -> None:
    """A CA file this user cannot read. Root reads anything, so as root the check
    runs in a forked child that has become ``nobody``."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    unreadable = directory / "ca.crt"
    unreadable.write_text("CA")
    unreadable.chmod(0)
    environ = {"DATABASE_URL": PG, "DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": str(unreadable)}
    try:
        if os.geteuid() != 0:
            message = refused("not readable", **environ)
        else:
            message = _as_nobody(lambda: refused("not readable", **environ))
    finally:
        shutil.rmtree(directory)
    assert message == (
        f"configuration error: DB_SSLROOTCERT={str(unreadable)!r} is not valid: "
        "the file is not readable by this user."
    )


def _as_nobody(function):
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report, leave without cleanup
        try:
            nobody = pwd.getpwnam("nobody")
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(writer, function().encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    return result


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_others_can_read_is_refused(files, mode: int) -> None:
    Path(files["key"]).chmod(mode)
    refused(
        f"its permissions are {mode:04o} and libpq refuses a private key others can read",
        DATABASE_URL=PG,
        DB_SSLCERT=files["cert"],
        DB_SSLKEY=files["key"],
    )


def test_certificate_and_key_go_together(files) -> None:
    refused("DB_SSLCERT and DB_SSLKEY go together", DATABASE_URL=PG, DB_SSLCERT=files["cert"])


def test_disable_contradicts_certificates(files) -> None:
    refused(
        "DB_SSLMODE=disable contradicts",
        DATABASE_URL=PG,
        DB_SSLMODE="disable",
        DB_SSLROOTCERT=files["ca"],
    )


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgres://app:s3cret@db.internal:notaport/shop", "is not valid: expected a URL"),
        ("mysql://app:s3cret@db/shop", "supports postgres://"),
        ("postgres://app:s3cret@db.internal:5432/", "it names no database"),
        ("db.internal:5432", "is not valid"),
    ],
)
def test_malformed_urls(url: str, fragment: str) -> None:
    message = refused(fragment, DATABASE_URL=url)
    assert message.startswith("configuration error: DATABASE_URL=")


def test_tls_settings_on_sqlite_are_refused() -> None:
    refused("DB_SSLMODE is set but DATABASE_URL is not a PostgreSQL URL", DB_SSLMODE="require")


def test_every_database_problem_is_listed_not_only_the_first(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("KEY")
    key.chmod(0o644)
    found = problems(
        env.load(
            {
                "DATABASE_URL": "postgres://app:s3cret@db.internal:5432/?sslmode=verify",
                "DB_SSLROOTCERT": "/nonexistent/ca.crt",
                "DB_SSLKEY": str(key),
                "DB_POOL_MIN_SIZE": "9",
                "DB_POOL_MAX_SIZE": "3",
            }
        )
    )
    assert [line.split(" is ")[0].split(" and ")[0] for line in found] == [
        "DB_POOL_MIN_SIZE=9",
        "DATABASE_URL='postgres://app:***@db.internal:5432/?sslmode=verify'",
        "DATABASE_URL's sslmode='verify'",
        "DB_SSLROOTCERT='/nonexistent/ca.crt'",
        f"DB_SSLKEY={str(key)!r}",
        "DB_SSLCERT",
    ], found
    assert not any("s3cret" in line for line in found)


def test_the_server_bounds_postgres_sessions_by_the_request_timeout() -> None:
    from django_k8s_runtime.database import bound_by_request

    databases = {
        "default": database(DATABASE_URL=PG),
        "own": database(DATABASE_URL=PG + "?options=-c%20statement_timeout%3D5000"),
        "local": database(),
    }
    bound_by_request(databases, 30)
    assert databases["default"]["OPTIONS"]["options"] == (
        "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=30000"
    )
    # A project's own value is kept; only what it did not set is added.
    assert databases["own"]["OPTIONS"]["options"] == (
        "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=30000"
    )
    assert "OPTIONS" not in databases["local"] or "options" not in databases["local"]["OPTIONS"]


def test_behind_pgbouncer_server_side_cursors_are_off() -> None:
    """Transaction mode lends a session per transaction: a WITH HOLD cursor is not
    there for the next FETCH (tests/runtime/test_database_through_pgbouncer.py)."""
    pooled = database(DATABASE_URL=PG, DB_POOLER="pgbouncer", DB_REQUEST_TIMEOUTS="false")
    assert pooled["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert "pool" in pooled["OPTIONS"]  # each worker's pool stays, in front of PgBouncer
    assert not database(DATABASE_URL=PG).get("DISABLE_SERVER_SIDE_CURSORS")


def test_request_timeouts_through_pgbouncer_are_refused_with_what_to_set_instead() -> None:
    message = refused(
        "DB_REQUEST_TIMEOUTS=true cannot work with DB_POOLER=pgbouncer",
        DATABASE_URL=PG,
        DB_POOLER="pgbouncer",
        DB_REQUEST_TIMEOUTS="true",
        GUNICORN_CMD_ARGS="--timeout 45",
    )
    # The effective timeout, GUNICORN_CMD_ARGS's, in what PgBouncer should run.
    assert "statement_timeout = 45000; SET idle_in_transaction_session_timeout = 45000" in message


def test_the_pools_django_keeps_are_where_pool_stats_reads_them() -> None:
    """database.pool_stats() reads Django's private registry of pools (one per alias,
    class-wide), so as not to open a pool only to read it: pinned with Django."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    from django_k8s_runtime import database

    assert isinstance(DatabaseWrapper._connection_pools, dict)
    assert database.pool_stats() == {}  # SQLite here: no pool to read
