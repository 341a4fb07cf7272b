"""Real CPU cgroups of a test's own: a "pod" with a "container" inside, whose CFS
quotas a test sets and changes while a server runs in the container, as the
kubelet does on an in-place resize.

cgroup v2 where the ``cpu`` controller is on the unified hierarchy, else v1's
``cpu`` hierarchy (``cpu.cfs_quota_us``): both are what ``server/cpu.py`` reads.
Needs root and a writable cgroup file system; everything made is removed after.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

PERIOD_US = 100_000


def _mounts() -> Iterator[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of each cgroup mount."""
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            fs_type, options = fields[separator + 1], fields[separator + 3]
            if fs_type in ("cgroup", "cgroup2"):
                yield fields[4], fs_type, set(options.split(","))


def cpu_hierarchy() -> tuple[Path, int] | None:
    """Where this machine's ``cpu`` controller is mounted, and the cgroup version."""
    for point, fs_type, _options in _mounts():
        if fs_type == "cgroup2":
            controllers = (Path(point) / "cgroup.controllers").read_text().split()
            if "cpu" in controllers:
                return Path(point), 2
    for point, fs_type, options in _mounts():
        if fs_type == "cgroup" and "cpu" in options:
            return Path(point), 1
    return None


def why_not_usable() -> str | None:
    """None when a test can make CPU cgroups here, else why not."""
    if os.geteuid() != 0:
        return "making cgroups needs root"
    found = cpu_hierarchy()
    if found is None:
        return "no cgroup file system with the cpu controller is mounted"
    mount, _ = found
    if not os.access(mount, os.W_OK):
        return f"{mount} is not writable"
    return None


class PodCgroups:
    """``<mount>/django-k8s-test-<id>/pod/container``."""

    def __init__(self) -> None:
        found = cpu_hierarchy()
        assert found is not None
        self.mount, self.version = found
        self.top = self.mount / f"django-k8s-test-{uuid.uuid4().hex[:8]}"
        self.pod = self.top / "pod"
        self.container = self.pod / "container"

    def __enter__(self) -> PodCgroups:
        self.top.mkdir()
        if self.version == 2:
            self._enable_cpu(self.mount)
            self._enable_cpu(self.top)
        self.pod.mkdir()
        if self.version == 2:
            self._enable_cpu(self.pod)
        self.container.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @staticmethod
    def _enable_cpu(directory: Path) -> None:
        control = directory / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu")

    def set_cpus(self, cgroup: Path, cpus: float | None) -> None:
        """The CFS quota of ``cgroup``: ``cpus`` CPUs' worth of each period, or none."""
        quota = None if cpus is None else round(cpus * PERIOD_US)
        if self.version == 2:
            (cgroup / "cpu.max").write_text(f"{quota or 'max'} {PERIOD_US}")
        else:
            (cgroup / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (cgroup / "cpu.cfs_quota_us").write_text(str(quota or -1))

    def quota_file(self, cgroup: Path) -> Path:
        return cgroup / ("cpu.max" if self.version == 2 else "cpu.cfs_quota_us")

    def run_inside(self, command: list[str]) -> list[str]:
        """``command``, started in the container's cgroup (its children with it)."""
        join = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        return ["sh", "-c", join, str(self.container), *command]

    def run_as_a_container(self, command: list[str]) -> list[str]:
        """``command`` as a container runtime starts it: in the container's cgroup, with a
        cgroup namespace of its own (``/proc/self/cgroup`` says ``/``) and the
        container's cgroup mounted where the controller's hierarchy was. The pod's
        cgroup, its parent, is then out of sight."""
        inner = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        outer = (
            'echo $$ > "$1/cgroup.procs" && '
            f"exec unshare --cgroup --mount sh -c '{inner}' inner \"$@\""
        )
        return ["sh", "-c", outer, "outer", str(self.container), str(self.mount), *command]

    def remove(self, timeout: float = 10) -> None:
        """Remove the cgroups, innermost first, once their processes have gone."""
        deadline = time.monotonic() + timeout
        for cgroup in (self.container, self.pod, self.top):
            while cgroup.exists():
                try:
                    cgroup.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    with contextlib.suppress(OSError):
                        for pid in (cgroup / "cgroup.procs").read_text().split():
                            os.kill(int(pid), 9)
                    time.sleep(0.1)
