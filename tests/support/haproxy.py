"""A real HAProxy on loopback in front of several app instances, modelling how
traffic reaches a pod in Kubernetes, without anything that would hide a server's
mistakes:

* it learns late that a pod is going away: a health check of ``/health`` every
  second, two failures to drop it (about two seconds, like endpoint propagation);
* it never retries (kube-proxy is L4 and cannot): a refused connection is a
  failed request (HAProxy answers 503);
* a new backend connection per request (``http-server-close``), so every request
  meets the listening socket, as new client connections do during a rollout.

Its admin socket tells the tests when a new instance is in rotation, as a rollout
with ``maxUnavailable: 0`` waits for the new pod to be Ready.
"""

from __future__ import annotations

import contextlib
import csv
import io
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from harness.processes import free_port

CONFIG = """\
global
    maxconn 2000
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 0
    option http-server-close

frontend app
    bind 127.0.0.1:{port}
    default_backend pods

backend pods
    option httpchk GET /health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}
"""


class HAProxy:
    def __init__(self, backend_ports: list[int]) -> None:
        self.port = free_port()
        servers = "\n".join(
            f"    server pod{n} 127.0.0.1:{port} check" for n, port in enumerate(backend_ports)
        )
        directory = Path(tempfile.mkdtemp(prefix="haproxy-"))
        self.config = directory / "haproxy.cfg"
        self.socket = directory / "admin.sock"
        self.config.write_text(CONFIG.format(port=self.port, servers=servers, socket=self.socket))
        self.server_count = len(backend_ports)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HAProxy:
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config)], check=True)
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_until_up(range(self.server_count))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def status(self) -> dict[str, str]:
        """Each backend server's state as HAProxy sees it (UP, DOWN, ...)."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(self.socket))
            connection.sendall(b"show stat\n")
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "pods" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_until_up(self, servers: Iterable[int], timeout: float = 30) -> None:
        """Wait until the balancer sends traffic to these servers (by index)."""
        names = {f"pod{index}" for index in servers}
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status = self.status()
                if all(status.get(name) == "UP" for name in names):
                    return
            time.sleep(0.1)
        raise AssertionError(f"HAProxy did not see {sorted(names)} up within {timeout}s: {status}")
