"""A PostgreSQL cluster of the test's own, from Debian's server binaries.

Tests that need a server in a particular state (TLS on, stopped, restarted)
start one here, on a free port, in a temporary directory, and remove it after.
PostgreSQL refuses to run as root, so as root the server runs as ``postgres``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from harness.processes import free_port

APP_USER, APP_PASSWORD, APP_DATABASE = "app", "app-password", "app"


def server_binaries() -> Path | None:
    """The newest Debian PostgreSQL server's bin directory, if installed."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    ca: Path | None = None  # to verify client certificates


class PostgresCluster:
    def __init__(
        self,
        *,
        tls: ServerTls | None = None,
        hba: Iterable[str] | None = None,
        max_connections: int = 100,
    ) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = binaries
        self.port = free_port()
        self.tls = tls
        self.hba = (
            list(hba)
            if hba is not None
            else [
                f"host{'ssl' if tls else ''} all all 127.0.0.1/32 scram-sha-256",
            ]
        )
        self.max_connections = max_connections
        self.directory = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.data = self.directory / "data"
        self.run_as_postgres = os.geteuid() == 0

    # Life cycle ----------------------------------------------------------------

    def _as_owner(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.run_as_postgres else []
        return subprocess.run(
            [*prefix, *command], check=True, capture_output=True, text=True, cwd=self.directory
        )

    def init(self) -> PostgresCluster:
        if self.run_as_postgres:
            uid = pwd.getpwnam("postgres").pw_uid
            os.chown(self.directory, uid, uid)
            self.directory.chmod(0o755)
        self._as_owner(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        conf = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.directory}'",
            f"max_connections = {self.max_connections}",
            "fsync = off",
            "log_connections = on",
        ]
        if self.tls:
            conf += [
                "ssl = on",
                f"ssl_cert_file = '{self._own(self.tls.cert)}'",
                f"ssl_key_file = '{self._own(self.tls.key)}'",
            ]
            if self.tls.ca:
                conf.append(f"ssl_ca_file = '{self._own(self.tls.ca)}'")
        with (self.data / "postgresql.conf").open("a") as file:
            file.write("\n".join(conf) + "\n")
        hba = ["local all all trust", *self.hba]
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        return self

    def _own(self, path: Path) -> Path:
        """A copy of ``path`` the server may read (keys must belong to it, mode 0600)."""
        target = self.directory / f"server-{path.name}"
        shutil.copy(path, target)
        target.chmod(0o600)
        if self.run_as_postgres:
            uid = pwd.getpwnam("postgres").pw_uid
            os.chown(target, uid, uid)
        return target

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            self.init()
        self._as_owner(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def create_app_database(self) -> PostgresCluster:
        self.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        self.execute(f"CREATE DATABASE {APP_DATABASE} OWNER {APP_USER}")
        return self

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        self.create_app_database()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # Use -------------------------------------------------------------------------

    def url(
        self,
        *,
        user: str = APP_USER,
        password: str = APP_PASSWORD,
        database: str = APP_DATABASE,
        host: str = "127.0.0.1",
        **params: str,
    ) -> str:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        return f"postgres://{user}:{password}@{host}:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run SQL as the superuser over the Unix socket (no TLS, no password)."""
        with psycopg.connect(
            host=str(self.directory),
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        ) as connection:
            cursor = connection.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""
