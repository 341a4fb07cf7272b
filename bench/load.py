"""Drive one endpoint with wrk and read its summary.

wrk runs with one thread (its own core is enough for it) and a fixed number of
keep-alive connections; ``report.lua`` prints the summary as one JSON line.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("report.lua")


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write + timeout
    status_errors: int  # responses with status 400 or more

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors


def wrk_version() -> str:
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" [")[0] if first else "unknown"


def run(url: str, *, seconds: int, connections: int) -> Result:
    completed = subprocess.run(
        [
            "wrk",
            *("--threads", "1", "--connections", str(connections)),
            *("--duration", f"{seconds}s", "--timeout", "5s", "--latency"),
            *("--script", str(SCRIPT)),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    summary = json.loads(
        next(line for line in reversed(completed.stdout.splitlines()) if line.startswith("{"))
    )
    return Result(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        socket_errors=sum(summary[key] for key in ("connect", "read", "write", "timeout")),
        status_errors=summary["status"],
    )
