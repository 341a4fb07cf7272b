"""Server processes: start on a pinned core, time to ready, watch memory, stop.

Each server runs in a session of its own, so stopping it kills its whole process
group (master, workers, helper threads) and nothing outlives the benchmark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import MemoryPeak
from harness.processes import children

ROOT = Path(__file__).resolve().parent.parent


def start(
    argv: Sequence[str], environ: Mapping[str, str], log: Path, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    """Start a server; with ``cpus``, pinned there (its workers inherit the pinning)."""
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    with log.open("ab") as output:
        return subprocess.Popen(
            [*pin, *argv],
            cwd=ROOT,
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def get_status(port: int, path: str, timeout: float = 5) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_ready(
    process: subprocess.Popen[bytes], port: int, path: str, started: float, timeout: float = 60
) -> float:
    """Seconds from ``started`` to the first 200 on ``path``."""
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode} before it was ready")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get_status(port, path) == 200:
                return time.monotonic() - started
        time.sleep(0.01)
    raise RuntimeError(f"no 200 on {path} within {timeout:g}s")


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def workers(pid: int) -> list[int]:
    """The processes that serve: a master's children, or the process itself."""
    return children(pid) or [pid]


def descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children(current))
    return found


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) in KiB from /proc/<pid>/smaps_rollup; None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0])
    return values.get("Rss", 0), values.get("Pss", 0)


def status_mib(pid: int, name: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {name} for process {pid}")


def reset_peak_memory(pid: int) -> None:
    """Start ``VmHWM`` again from the process's memory now (Linux's clear_refs, 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and all its descendants.

    Per request, this is the cost of serving it, whatever else runs on the machine:
    a busy neighbour lowers req/s but hardly changes the CPU a request takes.
    """
    ticks = 0
    for member in descendants(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _TICK


def wait_idle(
    pid: int, *, window: float = 0.2, busy_share: float = 0.1, timeout: float = 15
) -> bool:
    """Wait until ``pid`` and its descendants use less than ``busy_share`` of a core
    over ``window`` seconds; False if they are still busy after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < busy_share * window:
            return True
    return False


def core_busy_seconds(cpu: int) -> float:
    """Busy time of one core so far (everything but idle and iowait), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / _TICK
    return 0.0


@dataclass
class MemoryPeaks:
    worker_rss_kib: int = 0
    worker_pss_kib: int = 0
    total_pss_kib: int = 0  # every process of the server, master included
    worker_pids: set[int] = field(default_factory=set)

    def sample(self, pid: int) -> None:
        served = workers(pid)
        self.worker_pids.update(served)
        total = 0
        for member in descendants(pid):
            measured = memory_kib(member)
            if measured is None:
                continue
            rss, pss = measured
            total += pss
            if member in served:
                self.worker_rss_kib = max(self.worker_rss_kib, rss)
                self.worker_pss_kib = max(self.worker_pss_kib, pss)
        self.total_pss_kib = max(self.total_pss_kib, total)

    def recorded(self) -> MemoryPeak:
        return MemoryPeak(
            self.worker_rss_kib, self.worker_pss_kib, self.total_pss_kib, len(self.worker_pids)
        )


class MemorySampler:
    """Samples every server's memory a few times a second, in a background thread.

    Peaks, not averages: a worker's memory grows with load and rarely shrinks,
    and the peak is what a container's memory limit has to fit.
    """

    def __init__(self, servers: Mapping[str, int], interval: float = 0.25) -> None:
        self.servers = dict(servers)
        self.interval = interval
        self.peaks = {key: MemoryPeaks() for key in self.servers}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for key, pid in self.servers.items():
                with self._lock:
                    self.peaks[key].sample(pid)

    def snapshot(self) -> dict[str, MemoryPeaks]:
        """The peaks so far, as a copy that later samples leave alone."""
        with self._lock:
            return {
                key: dataclasses.replace(peaks, worker_pids=set(peaks.worker_pids))
                for key, peaks in self.peaks.items()
            }

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
