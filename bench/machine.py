"""What the numbers were measured on: the machine, every version that matters, the
commit; recorded with each phase's results (``results.RunInfo``)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.results import Machine, RunInfo

# The servers, the runtime and what they run on; the clients the benchmark drives them with.
PACKAGES = (
    "django-k8s-runtime",
    "django",
    "gunicorn",
    "uvicorn",
    "uvicorn-worker",
    "granian",
    "daphne",
    "channels",
    "channels-redis",
    "websockets",
    "uvloop",
    "httptools",
    "asgiref",
    "psycopg",
    "whitenoise",
    "aiohttp",
)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def operating_system() -> str:
    try:
        fields = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
    except OSError:
        return "Linux"
    return fields.get("PRETTY_NAME", "Linux").strip('"')


def machine() -> Machine:
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=memory_gib(),
        os=operating_system(),
        kernel=platform.release(),
    )


def packages() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def source_revision() -> str:
    """The commit measured, and whether the tree had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parent.parent
    git = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes" if changes else "")


class Clock:
    """A phase's start, for its ``RunInfo`` at the end."""

    def __init__(self) -> None:
        self.started = datetime.now(UTC)
        self.load_before = os.getloadavg()[0]

    def info(self, tools: dict[str, str]) -> RunInfo:
        return RunInfo(
            started=self.started.isoformat(timespec="seconds"),
            elapsed_seconds=round((datetime.now(UTC) - self.started).total_seconds(), 1),
            load_average=(round(self.load_before, 2), round(os.getloadavg()[0], 2)),
            machine=machine(),
            python=platform.python_version(),
            packages=packages(),
            tools=tools,
            source=source_revision(),
        )
