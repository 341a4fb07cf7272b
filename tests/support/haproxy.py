"""A real HAProxy on loopback in front of several app instances, modelling how
traffic reaches a pod in Kubernetes, without anything that would hide a server's
mistakes:

* it learns late that a pod is going away: a health check of ``/health`` every
  second, two failures to drop it (about two seconds, like endpoint propagation);
* it never retries (kube-proxy is L4 and cannot): a refused connection is a
  failed request (HAProxy answers 503);
* a new backend connection per request (``http-server-close``), so every request
  meets the listening socket, as new client connections do during a rollout.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.server import free_port

CONFIG = """\
global
    maxconn 2000

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
        self.config = Path(tempfile.mkdtemp(prefix="haproxy-")) / "haproxy.cfg"
        self.config.write_text(CONFIG.format(port=self.port, servers=servers))
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
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                response = httpx.get(self.url("/health"), timeout=1)
                if response.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("HAProxy saw no healthy backend within 20 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
