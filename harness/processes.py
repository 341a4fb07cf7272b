"""Ports, process trees and a clean environment for servers started by the tests
and the benchmark."""

from __future__ import annotations

import os
import socket
from pathlib import Path

# The service's own variables (and Gunicorn's), never inherited by a server started
# here: it gets exactly what its caller sets.
SERVICE_PREFIXES = (
    "GUNICORN_",
    "DJANGO_",
    "DB_",
    "HEALTH_",
    "LOG_",
    "METRICS_",
    "DATABASE_",
    "CACHE_",
    "WEB_CONCURRENCY",
    "PROMETHEUS_",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inherited_environment() -> dict[str, str]:
    """This process's environment without any of the service's variables."""
    return {key: value for key, value in os.environ.items() if not key.startswith(SERVICE_PREFIXES)}


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc (the workers of a master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)
