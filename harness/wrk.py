"""Drive the real load generator, wrk, and read what it saw.

wrk prints its summary as prose; ``wrk_summary.lua`` prints it as one JSON line
too, so nothing here parses prose. wrk counts a response of status 400 or more
as a status error (its "Non-2xx or 3xx responses").

``run`` drives one URL and waits; ``start`` and ``collect`` drive several at once
(each wrk its own process), for load that mixes endpoints on one server.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk_summary.lua")
GRACE_SECONDS = 60  # beyond its duration, before a wrk that has not ended is killed


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write + timeout
    status_errors: int  # responses with status 400 or more
    output: str  # wrk's own report, for messages
    timeouts: int = 0  # of socket_errors: requests unanswered after ``timeout``

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors


@dataclass(frozen=True)
class Running:
    """A wrk started by :func:`start`; :func:`collect` waits for it and reads it."""

    process: subprocess.Popen[str]
    seconds: float

    def stop(self) -> None:
        """Kill it if it still runs (it is bounded by its duration anyway)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.communicate()  # reaps it and closes its pipes


def version() -> str:
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" [")[0] if first else "unknown"


def start(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Running:
    """Start keeping ``connections`` keep-alive connections busy on ``url`` for
    ``seconds``, and return at once."""
    command = [
        "wrk",
        *("--threads", str(threads), "--connections", str(connections)),
        *("--duration", f"{seconds:g}s", "--timeout", f"{timeout:g}s", "--latency"),
        *("--script", str(SCRIPT)),
    ]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    process = subprocess.Popen(
        [*command, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Running(process, seconds)


def collect(started: Sequence[Running]) -> list[Result]:
    """Wait for every wrk in ``started`` and read each one's summary, in order.

    Should one fail (or this be interrupted), the others are stopped too."""
    try:
        return [_wait(running) for running in started]
    finally:
        for running in started:
            running.stop()


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
    started = start(
        url,
        connections=connections,
        seconds=seconds,
        threads=threads,
        headers=headers,
        timeout=timeout,
    )
    return collect([started])[0]


def _wait(running: Running) -> Result:
    process = running.process
    stdout, stderr = process.communicate(timeout=running.seconds + GRACE_SECONDS)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, stdout, stderr)
    return _parse(stdout)


def _parse(output: str) -> Result:
    last_json = next(line for line in reversed(output.splitlines()) if line.startswith("{"))
    summary = json.loads(last_json)
    return Result(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        socket_errors=sum(summary[key] for key in ("connect", "read", "write", "timeout")),
        status_errors=summary["status"],
        output=output,
        timeouts=summary["timeout"],
    )
