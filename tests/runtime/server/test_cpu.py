"""GUNICORN_WORKERS=auto: CPUs from the cgroup quota (v1, v2) or the affinity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from django_k8s_runtime.server.cpu import (
    AFFINITY,
    NOT_FOUND,
    CpuLimit,
    auto_workers,
    cpu_limit,
    describe,
)
from tests.support.requirements import require_tool
from tests.support.server import Server

V2_SELF = "0::/kubepods/pod1/container\n"
V1_SELF = "12:cpu,cpuacct:/kubepods/pod1/container\n4:memory:/kubepods/pod1/container\n"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def limit(root: Path, self_cgroup: str, affinity: set[int] | None = None) -> CpuLimit:
    proc = root / "proc-self-cgroup"
    proc.write_text(self_cgroup)
    return cpu_limit(
        str(root / "fs"), str(proc), affinity if affinity is not None else {0, 1, 2, 3}
    )


def test_v2_quota_of_one_and_a_half_cpus(tmp_path: Path) -> None:
    write(tmp_path, "fs/kubepods/pod1/container/cpu.max", "150000 100000\n")
    result = limit(tmp_path, V2_SELF)
    assert result.cpus == 1.5
    assert "cgroup v2" in result.source
    assert auto_workers(result) == 2


def test_v2_tightest_ancestor_wins(tmp_path: Path) -> None:
    write(tmp_path, "fs/kubepods/pod1/container/cpu.max", "max 100000\n")
    write(tmp_path, "fs/kubepods/pod1/cpu.max", "300000 100000\n")
    write(tmp_path, "fs/kubepods/cpu.max", "800000 100000\n")
    assert limit(tmp_path, V2_SELF).cpus == 3.0


def test_v2_in_a_container_that_sees_its_cgroup_at_the_root(tmp_path: Path) -> None:
    write(tmp_path, "fs/cpu.max", "250000 100000\n")
    result = limit(tmp_path, "0::/\n")
    assert result.cpus == 2.5
    assert auto_workers(result) == 3


def test_v2_without_a_quota_falls_back_to_affinity(tmp_path: Path) -> None:
    write(tmp_path, "fs/kubepods/pod1/container/cpu.max", "max 100000\n")
    result = limit(tmp_path, V2_SELF, affinity={0, 1, 2, 3, 4, 5})
    assert result == CpuLimit(6.0, AFFINITY, quota=False)
    assert auto_workers(result) == 6


def test_v1_quota(tmp_path: Path) -> None:
    write(tmp_path, "fs/cpu,cpuacct/kubepods/pod1/container/cpu.cfs_quota_us", "150000\n")
    write(tmp_path, "fs/cpu,cpuacct/kubepods/pod1/container/cpu.cfs_period_us", "100000\n")
    result = limit(tmp_path, V1_SELF)
    assert result.cpus == 1.5
    assert "cgroup v1" in result.source


def test_v1_without_a_quota(tmp_path: Path) -> None:
    write(tmp_path, "fs/cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "fs/cpu/cpu.cfs_period_us", "100000\n")
    assert limit(tmp_path, "1:cpu:/\n", affinity={0, 1}).cpus == 2.0


def test_restricted_affinity_never_the_node_total(tmp_path: Path) -> None:
    result = limit(tmp_path, "0::/\n", affinity={3})
    assert result.cpus == 1.0
    assert auto_workers(result) == 2  # never fewer than two


def test_v2_a_limit_only_on_the_pods_cgroup_counts_for_its_container(tmp_path: Path) -> None:
    """Kubernetes' pod-level resources: the quota is on the pod's cgroup, a parent."""
    write(tmp_path, "fs/kubepods/pod1/container/cpu.max", "max 100000\n")
    write(tmp_path, "fs/kubepods/pod1/cpu.max", "300000 100000\n")
    result = limit(tmp_path, V2_SELF)
    assert result.cpus == 3.0
    assert str(tmp_path / "fs/kubepods/pod1/cpu.max") in result.source


def test_the_log_says_where_the_count_came_from_or_that_no_limit_was_found() -> None:
    assert describe(CpuLimit(1.5, "cgroup v2 /sys/fs/cgroup/cpu.max: 150000/100000")) == (
        "2 workers = max(2, ceil(1.5 CPUs from cgroup v2 /sys/fs/cgroup/cpu.max: 150000/100000))"
    )
    assert describe(CpuLimit(8.0, AFFINITY, quota=False)) == (
        f"{NOT_FOUND}; 8 workers = max(2, ceil(8 CPUs from {AFFINITY}))"
    )
    assert NOT_FOUND.startswith("no CPU limit found")


@pytest.mark.parametrize(("cpus", "workers"), [(0.25, 2), (1.0, 2), (2.0, 2), (2.1, 3), (16, 16)])
def test_formula(cpus: float, workers: int) -> None:
    assert auto_workers(CpuLimit(cpus, "test")) == workers


@pytest.mark.slow
def test_auto_under_real_gunicorn_with_restricted_affinity() -> None:
    require_tool("taskset")
    server = Server({"GUNICORN_WORKERS": "auto", "HEALTH_CHECKS": ""})
    server.command = ["taskset", "-c", "0", *server.command]
    with server:
        assert len(server.wait_for_workers(2)) == 2
        lines = [json.loads(line)["message"] for line in server.log_lines()]
        (line,) = [line for line in lines if line.startswith("GUNICORN_WORKERS=auto")]
    assert line == (
        f"GUNICORN_WORKERS=auto: {NOT_FOUND}; 2 workers = max(2, ceil(1 CPUs from "
        "the CPUs this process may run on (its affinity)))"
    )
