"""A PgBouncer of the test's own, from Debian's ``pgbouncer``, configured by the
reference sidecar's ``pgbouncer.ini`` with only its addresses and file paths
changed: the server's PostgreSQL, a free port, this test's CA and password file.

PgBouncer refuses to run as root, so as root it runs as ``postgres``, as the
clusters of harness/postgres.py do. It is PgBouncer itself that gets the
signals (no wrapper), as in the sidecar, where it is PID 1.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.postgres import APP_DATABASE, APP_PASSWORD, APP_USER, PostgresCluster
from harness.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPONENT_INI = (
    ROOT / "deploy" / "kubernetes" / "components" / "pgbouncer-sidecar" / "pgbouncer.ini"
)


def binary() -> str | None:
    """Debian's pgbouncer (in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def component_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    config.read_string(COMPONENT_INI.read_text())
    return config


class PgBouncer:
    def __init__(self, postgres: PostgresCluster, ca: Path, **settings: str) -> None:
        found = binary()
        if found is None:
            raise RuntimeError("pgbouncer is not installed")
        self.binary = found
        self.postgres = postgres
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.ca = self.directory / "ca.crt"
        shutil.copy(ca, self.ca)
        self.settings = settings  # [pgbouncer] settings over the component's
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.directory / "pgbouncer.log"

    def config(self) -> str:
        """The component's pgbouncer.ini, pointed at this test's PostgreSQL and files."""
        config = component_config()
        for name, entry in config["databases"].items():
            entry = re.sub(r"\bhost=\S+", "host=127.0.0.1", entry)
            config["databases"][name] = re.sub(r"\bport=\d+", f"port={self.postgres.port}", entry)
        section = config["pgbouncer"]
        section["listen_port"] = str(self.port)
        section["auth_file"] = str(self.directory / "userlist.txt")
        section["server_tls_ca_file"] = str(self.ca)
        section.update(self.settings)
        text = io.StringIO()
        config.write(text)
        return text.getvalue()

    def start(self, timeout: float = 15) -> PgBouncer:
        (self.directory / "pgbouncer.ini").write_text(self.config())
        (self.directory / "userlist.txt").write_text(f'"{APP_USER}" "{APP_PASSWORD}"\n')
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            uid = pwd.getpwnam(user).pw_uid
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, uid, uid)
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, str(self.directory / "pgbouncer.ini")],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=user,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pgbouncer exited with {self.process.returncode}:\n{self.log()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer not listening within {timeout}s:\n{self.log()}")

    def url(self, **params: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        return f"postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.port}/{APP_DATABASE}" + (
            f"?{query}" if query else ""
        )

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""
