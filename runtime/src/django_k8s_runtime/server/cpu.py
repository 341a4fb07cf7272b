"""How many CPUs this container may really use: the number behind GUNICORN_WORKERS=auto.

``os.cpu_count()`` reports the node's CPUs: 64 on a big node even when the pod's
limit is 2, and a worker per node CPU then thrashes under the CFS quota. The
quota is read from cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``) along this process's cgroup path, the tightest wins;
without a quota the CPUs this process may run on (its affinity) count.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

MIN_WORKERS = 2  # one worker may be recycling or blocked; keep another serving


@dataclass(frozen=True)
class CpuLimit:
    cpus: float
    source: str


def cpu_limit(
    root: str = "/sys/fs/cgroup",
    proc_self_cgroup: str = "/proc/self/cgroup",
    affinity: set[int] | None = None,
) -> CpuLimit:
    quotas = _cgroup_quotas(Path(root), _read(proc_self_cgroup) or "")
    if quotas:
        cpus, source = min(quotas)
        return CpuLimit(cpus, source)
    cpus = len(affinity if affinity is not None else os.sched_getaffinity(0))
    return CpuLimit(float(cpus), "CPU affinity (no cgroup CPU quota)")


def auto_workers(limit: CpuLimit) -> int:
    """One Uvicorn worker per CPU (the event loop keeps one CPU busy; synchronous
    views run in threads), rounded up, and never fewer than two."""
    return max(MIN_WORKERS, math.ceil(limit.cpus))


def _cgroup_quotas(root: Path, self_cgroup: str) -> list[tuple[float, str]]:
    quotas: list[tuple[float, str]] = []
    for line in self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            for directory in _ancestors(root, path):
                quota = _v2_quota(directory / "cpu.max")
                if quota:
                    quotas.append(quota)
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                for directory in _ancestors(mount, path):
                    quota = _v1_quota(directory)
                    if quota:
                        quotas.append(quota)
    if not quotas:  # a container that sees only its own cgroup at the root
        for quota in (_v2_quota(root / "cpu.max"), _v1_quota(root / "cpu")):
            if quota:
                quotas.append(quota)
    return quotas


def _ancestors(mount: Path, path: str) -> list[Path]:
    parts = [part for part in path.strip("/").split("/") if part]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(cpu_max: Path) -> tuple[float, str] | None:
    fields = (_read(cpu_max) or "").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    quota, period = int(fields[0]), int(fields[1])
    return (quota / period, f"cgroup v2 {cpu_max}: {quota}/{period}") if period > 0 else None


def _v1_quota(directory: Path) -> tuple[float, str] | None:
    quota_text = _read(directory / "cpu.cfs_quota_us")
    period_text = _read(directory / "cpu.cfs_period_us")
    if not quota_text or not period_text:
        return None
    quota, period = int(quota_text), int(period_text)
    if quota <= 0 or period <= 0:
        return None
    return quota / period, f"cgroup v1 {directory}: cfs_quota_us={quota} cfs_period_us={period}"


def _read(path: Path | str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None
