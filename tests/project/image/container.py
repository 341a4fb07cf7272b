"""Run the built image with podman and look at it from outside.

podman is called through ``scripts/image podman``, so the tests use the same
storage and settings (runc, vfs, no default ulimits) as the build. Containers
share the host's network: the test's own PostgreSQL listens on 127.0.0.1, and
requests reach Gunicorn from 127.0.0.1, the proxy it trusts by default.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from tests.support.server import ROOT, TEST_SECRET_KEY, free_port

IMAGE = "django-k8s-runtime:latest"
PODMAN = [str(ROOT / "scripts" / "image"), "podman"]


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited with {result.returncode}:\n{result.stderr}"
        )
    return result


def inspect(name: str, template: str) -> str:
    return podman("inspect", "--format", template, name).stdout.strip()


def image_config() -> dict[str, Any]:
    return json.loads(podman("image", "inspect", IMAGE).stdout)[0]


# A root file system that cannot be written, as Kubernetes runs it with
# readOnlyRootFilesystem; /tmp is the one writable tmpfs (/dev/shm is one too).
READ_ONLY = ("--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=16m")


def run_once(
    *command: str, environ: Mapping[str, str], options: tuple[str, ...] = READ_ONLY
) -> subprocess.CompletedProcess[str]:
    """Run a one-off container (the image's CMD if no command), like a Kubernetes Job."""
    env_args = [f"--env={key}={value}" for key, value in environ.items()]
    return podman(
        "run", "--rm", "--network=host", *options, *env_args, IMAGE, *command,
        check=False, timeout=300,
    )  # fmt: skip


class Container:
    """One container of the image, serving with the environment a test chooses."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = {
            "DJANGO_SECRET_KEY": TEST_SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "GUNICORN_PORT": str(free_port()),
            "METRICS_PORT": str(free_port()),
            **environ,
        }
        self.port = int(self.environ["GUNICORN_PORT"])
        self.metrics_port = int(self.environ["METRICS_PORT"])
        self.name = f"image-test-{uuid.uuid4().hex[:12]}"
        self.create_seconds: float | None = None  # set by create()
        self.started_at = 0.0

    def create(self) -> Container:
        """Create the container; with vfs storage this copies the whole image."""
        env_args = [f"--env={key}={value}" for key, value in self.environ.items()]
        started = time.monotonic()
        podman("create", f"--name={self.name}", "--network=host", *READ_ONLY, *env_args, IMAGE)
        self.create_seconds = time.monotonic() - started
        return self

    def start(self) -> Container:
        """Start it (again, once it has exited)."""
        if self.create_seconds is None:
            self.create()
        self.started_at = time.monotonic()
        podman("start", self.name)
        return self

    def remove(self) -> None:
        podman("rm", "--force", "--time=0", self.name, check=False)

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # Requests ------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, *, via_ingress: bool = False, **kwargs: Any) -> httpx.Response:
        """GET as the kubelet's plain-http probe, or as a request that came through
        an https ingress (``X-Forwarded-Proto`` from 127.0.0.1, a trusted proxy)."""
        headers = {"x-forwarded-proto": "https"} if via_ingress else {}
        return httpx.get(self.url(path), headers=headers, timeout=10, **kwargs)

    def wait_for_200(self, path: str, timeout: float = 60) -> float:
        """Seconds from ``start()`` to the first 200 on ``path``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self.get(path).status_code == 200:
                    return time.monotonic() - self.started_at
            if self.state() not in ("created", "running"):
                raise AssertionError(f"container {self.state()}:\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"no 200 on {path} within {timeout}s:\n{self.logs()}")

    # Observation ---------------------------------------------------------------

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def state(self) -> str:
        return inspect(self.name, "{{.State.Status}}")

    def exit_code(self) -> int:
        return int(inspect(self.name, "{{.State.ExitCode}}"))

    def processes(self) -> list[tuple[int, int, str]]:
        """(pid, parent pid, command line) of every process, as seen inside."""
        lines = podman("top", self.name, "pid", "ppid", "args").stdout.splitlines()[1:]
        processes = []
        for line in lines:
            pid, ppid, args = line.split(maxsplit=2)
            processes.append((int(pid), int(ppid), args.strip()))
        return processes

    def workers(self) -> list[int]:
        return [pid for pid, ppid, _ in self.processes() if ppid == 1]

    def wait_for_workers(self, count: int, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.workers()
            if len(workers) == count and self.logs().count("Started server process") >= count:
                return workers
            time.sleep(0.1)
        raise AssertionError(f"expected {count} workers, have {self.workers()}:\n{self.logs()}")

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        user_args = [f"--user={user}"] if user else []
        return podman("exec", *user_args, self.name, *command, check=False)

    # Stopping --------------------------------------------------------------------

    def wait_exit(self, timeout: float = 60) -> int:
        podman("wait", self.name, timeout=timeout)
        return self.exit_code()
