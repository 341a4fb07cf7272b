"""Drive the real load generator, wrk, and read what it saw.

wrk prints its summary as prose; ``wrk_summary.lua`` prints it as one JSON line
too, so nothing here parses prose. wrk counts a response of status 400 or more
as a status error (its "Non-2xx or 3xx responses").
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk_summary.lua")


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write + timeout
    status_errors: int  # responses with status 400 or more
    output: str  # wrk's own report, for messages

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors


def version() -> str:
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" [")[0] if first else "unknown"


def run(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Result:
    """Keep ``connections`` keep-alive connections busy on ``url`` for ``seconds``."""
    command = [
        "wrk",
        *("--threads", str(threads), "--connections", str(connections)),
        *("--duration", f"{seconds:g}s", "--timeout", f"{timeout:g}s", "--latency"),
        *("--script", str(SCRIPT)),
    ]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    completed = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
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
        output=completed.stdout,
    )
