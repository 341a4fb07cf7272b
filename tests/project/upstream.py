"""The example's upstream stand-in (example/upstream.py) on a port of the test's own,
stopped and started again on the same port as a dependency that goes away would be."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.processes import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


class Upstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, delay_ms: int = 0) -> str:
        return f"http://127.0.0.1:{self.port}/quote?delay_ms={delay_ms}"

    def start(self) -> Upstream:
        self.process = subprocess.Popen(
            [
                str(BIN / "uvicorn"),
                "example.upstream:app",
                *("--host", "127.0.0.1", "--port", str(self.port)),
                *("--lifespan", "off", "--no-access-log"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url(), timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError("the upstream stand-in did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
