"""Start the real ``gunicorn`` with the real worker class, on a free port, and watch it.

Nothing is mocked: the server is the command the Dockerfile runs, with the
environment a test chooses, serving the runtime's test site (tests/site/) unless a
test names another application (tests/project/service.py: this service). The
process group is killed on exit, whatever happened, so no test leaves a server behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from harness.processes import children, free_port, inherited_environment
from tests.support.requirements import require_tool

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEST_SECRET_KEY = "tests-only-" + "k3y-" * 12


def base_environment(**overrides: str) -> dict[str, str]:
    """A production-like environment for a test server; tests override what they test."""
    environ = inherited_environment()
    environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.site.settings",
            "DJANGO_SECRET_KEY": TEST_SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
            "GUNICORN_HOST": "127.0.0.1",
            "GUNICORN_WORKERS": "2",
            "GUNICORN_SHUTDOWN_DELAY": "0",
            "LOG_FORMAT": "json",
            "METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    environ.update(overrides)
    return environ


SITE_APPLICATION = "tests.site.asgi:application"  # the runtime's test site (tests/site/)
GUNICORN_COMMAND = ["gunicorn", "-c", "python:django_k8s_runtime.gunicorn", SITE_APPLICATION]


def run(
    command: list[str], environ: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command (``python -m tests.site.manage ...``, ``gunicorn ...``) to its end,
    in a test environment; ``None`` removes a variable."""
    env = base_environment(**{k: v for k, v in (environ or {}).items() if v is not None})
    for name in [k for k, v in (environ or {}).items() if v is None]:
        env.pop(name, None)
    program = str(BIN / command[0]) if command[0] in ("gunicorn", "python") else command[0]
    return subprocess.run(
        [program, *command[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def resident_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def reset_peak_memory(pid: int) -> None:
    """Start ``VmHWM`` again from the process's memory now (Linux's clear_refs, 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Server:
    """One Gunicorn master and its workers."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        args: tuple[str, ...] = (),
        pid_namespace: bool = False,
        command: list[str] | None = None,
        shm: Path | None = None,
        application: str = SITE_APPLICATION,
        leaks_expected: bool = False,
    ) -> None:
        environ = dict(environ or {})
        self.leaks_expected = leaks_expected
        self.port = int(environ.get("GUNICORN_PORT") or free_port())
        self.environ = base_environment(**{**environ, "GUNICORN_PORT": str(self.port)})
        self.command = command or [
            str(BIN / "gunicorn"),
            "-c",
            "python:django_k8s_runtime.gunicorn",
            application,
            *args,
        ]
        if shm is not None:
            # A /dev/shm of its own (this directory, in a mount namespace of its own):
            # what the server leaves there is its own, whatever runs beside it.
            require_tool("unshare")
            shm.mkdir(parents=True, exist_ok=True)
            mount = 'mount --bind "$0" /dev/shm && exec "$@"'
            self.command = ["unshare", "--mount", "sh", "-c", mount, str(shm), *self.command]
        if pid_namespace:
            require_tool("unshare")
            self.command = ["unshare", "--pid", "--fork", "--kill-child", *self.command]
        self.pid_namespace = pid_namespace
        self._log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    # Life cycle ----------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = 60) -> Server:
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_until_live(timeout)
        return self

    def wait_until_live(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url("/health/live"), timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"server not live within {timeout}s:\n{self.log()}")

    @property
    def master_pid(self) -> int:
        """The Gunicorn master as seen from here (inside a namespace it is PID 1)."""
        assert self.process is not None
        if not self.pid_namespace:
            return self.process.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = children(self.process.pid)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no process inside the PID namespace")

    def workers(self) -> list[int]:
        return children(self.master_pid)

    def wait_for_workers(self, count: int, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.workers()
            if len(found) == count and self.log().count("Started server process") >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"expected {count} workers, have {self.workers()}:\n{self.log()}")

    def signal(self, sig: int) -> None:
        os.kill(self.master_pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # Ctrl+C first (Gunicorn's quick shutdown runs its exit hooks), then
            # whatever is left.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.master_pid, signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers are in the same session; make sure none outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.assert_no_connection_leaked()

    def assert_no_connection_leaked(self) -> None:
        """Every test's server, on every path: a worker that served its last request
        with database connections still lent out says so (django_k8s_runtime/leaks.py),
        and that fails the test, unless it leaks on purpose."""
        if self.leaks_expected:
            return
        leaked = [line for line in self.log_lines() if "never given back" in line]
        assert not leaked, "database connections leaked:\n" + "\n".join(leaked)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Observation ---------------------------------------------------------------

    def url(self, path: str) -> str:
        host = self.environ.get("GUNICORN_HOST", "127.0.0.1")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return (
            f"http://[{host}]:{self.port}{path}"
            if ":" in host
            else f"http://{host}:{self.port}{path}"
        )

    def get(self, path: str, *, via_ingress: bool = True, **kwargs: object) -> httpx.Response:
        """GET as a request that came through an https ingress (trusted loopback proxy),
        or, with ``via_ingress=False``, as the kubelet's plain-http probe."""
        kwargs.setdefault("timeout", 30)
        headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
        if via_ingress:
            headers.setdefault("x-forwarded-proto", "https")
        return httpx.get(self.url(path), headers=headers, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def log_lines(self) -> Iterator[str]:
        yield from self.log().splitlines()
