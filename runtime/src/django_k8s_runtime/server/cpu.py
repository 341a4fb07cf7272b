"""How many CPUs this container may really use: the number behind GUNICORN_WORKERS=auto,
and the master following it when the limit changes under a running pod.

``os.cpu_count()`` reports the node's CPUs: 64 on a big node even when the pod's
limit is 2, and a worker per node CPU then thrashes under the CFS quota. The
quota is read from cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``) along this process's cgroup path, the tightest wins: a
limit set only on the pod (Kubernetes' pod-level resources) is on a parent of the
container's cgroup, and counts wherever that parent is visible. Inside a
container with a cgroup namespace of its own it is not, and nothing in the
container tells it; without a quota the CPUs this process may run on (its
affinity) count, and :func:`describe` says plainly that no limit was found.

An in-place resize (Kubernetes 1.35) changes the quota under the running
server; :func:`follow_the_quota` makes the master read it again every
``CHECK_SECONDS`` and add or retire workers as Gunicorn's TTIN/TTOU do.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_WORKERS = 2  # one worker may be recycling or blocked; keep another serving
CHECK_SECONDS = 1.0  # how often the master reads the quota again
AFFINITY = "the CPUs this process may run on (its affinity)"
NOT_FOUND = (
    "no CPU limit found: no CFS quota on this process's cgroup nor on any parent "
    "visible from it (a pod-level limit above a container's own cgroup namespace "
    "cannot be seen from inside)"
)


@dataclass(frozen=True)
class CpuLimit:
    cpus: float
    source: str
    quota: bool = True  # False: no quota was found; ``cpus`` is the affinity


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
    return CpuLimit(float(cpus), AFFINITY, quota=False)


def auto_workers(limit: CpuLimit) -> int:
    """One Uvicorn worker per CPU (the event loop keeps one CPU busy; synchronous
    views run in threads), rounded up, and never fewer than two."""
    return max(MIN_WORKERS, math.ceil(limit.cpus))


def describe(limit: CpuLimit) -> str:
    """The worker count and where it came from, for the log."""
    formula = (
        f"{auto_workers(limit)} workers = max({MIN_WORKERS}, ceil({limit.cpus:.3g} CPUs "
        f"from {limit.source}))"
    )
    return formula if limit.quota else f"{NOT_FOUND}; {formula}"


def follow_the_quota(
    arbiter: Any,
    limit: CpuLimit,
    *,
    read: Callable[[], CpuLimit] = cpu_limit,
    every: float = CHECK_SECONDS,
    log: logging.Logger | None = None,
) -> None:
    """Keep a Gunicorn arbiter's worker count at :func:`auto_workers` of the CPU
    limit as the limit changes (an in-place resize of the pod).

    The master's loop calls ``manage_workers()`` about once a second (after
    waiting up to 1 s for signals); before it, the quota is read again, no more
    often than ``every``. A change of the count sets ``num_workers``, as
    Gunicorn's TTIN and TTOU handlers do, and ``manage_workers`` then forks the
    new workers or sends the oldest ones SIGTERM: they stop accepting, finish
    their requests within the graceful timeout and exit. TTIN/TTOU sent by hand
    still work; the next change of the limit sets the count again."""
    follower = _Follower(arbiter, limit, read, every, log or logging.getLogger("gunicorn.error"))
    manage_workers = arbiter.manage_workers

    def manage_workers_following_the_quota() -> None:
        follower.check()
        manage_workers()

    arbiter.manage_workers = manage_workers_following_the_quota


class _Follower:
    def __init__(
        self,
        arbiter: Any,
        limit: CpuLimit,
        read: Callable[[], CpuLimit],
        every: float,
        log: logging.Logger,
    ) -> None:
        self._arbiter = arbiter
        self._limit = limit
        self._read = read
        self._every = every
        self._log = log
        self._next = time.monotonic() + every

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        limit = self._read()
        if limit == self._limit:
            return
        before, after = auto_workers(self._limit), auto_workers(limit)
        self._limit = limit
        if after != before:
            self._arbiter.num_workers = after
        self._log.info(
            "GUNICORN_WORKERS=auto: the CPU limit changed, %s (was %d)", describe(limit), before
        )


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
