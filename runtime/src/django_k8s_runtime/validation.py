"""Every start-up rule, run together: each problem one line, all of them at once.

A value that does not parse is a problem of the snapshot itself
(:attr:`.env.Snapshot.problems`). Each concern then adds the rules it
owns, as a function from the snapshot to a list of lines: the database's URL
and TLS files (:mod:`.database`), and below the rules between variables (recycling,
metrics, the health checks, WebSocket pings); a project adds its own with
:func:`rule`. :func:`check` runs them all, so an operator fixes every mistake in
one go, as the runtime promises, and nothing is found later, one at a time.

A rule that needs a value which did not parse is skipped: that value's own line
is already in the list.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django_k8s_runtime import command_line, database, tracing
from django_k8s_runtime.command_line import gunicorn_value, named
from django_k8s_runtime.env import DEFAULT, ConfigError, Snapshot
from django_k8s_runtime.observability import multiprocess
from django_k8s_runtime.server import memory

__all__ = ["check", "problems", "rule", "warning", "warnings"]


def recycling_problems(snapshot: Snapshot) -> list[str]:
    found = []
    jitter = gunicorn_value(snapshot, "GUNICORN_MAX_REQUESTS_JITTER")
    if jitter and not gunicorn_value(snapshot, "GUNICORN_MAX_REQUESTS"):
        found.append(
            f"{named(snapshot, 'GUNICORN_MAX_REQUESTS_JITTER', jitter)} has no effect because "
            f"{named(snapshot, 'GUNICORN_MAX_REQUESTS', 0)} (never recycle); set "
            "GUNICORN_MAX_REQUESTS or remove the jitter."
        )
    if snapshot.WORKER_MAX_MEMORY_MIB and not memory.measurable():
        found.append(
            f"WORKER_MAX_MEMORY_MIB={snapshot.WORKER_MAX_MEMORY_MIB} cannot work here: this system "
            f"does not tell a process its memory ({memory.STATM}, Linux only); set it to 0."
        )
    return found


def metrics_problems(snapshot: Snapshot) -> list[str]:
    """Metrics are on exactly when METRICS_PORT is not 0; nothing else decides it."""
    found = []
    if snapshot.METRICS_PORT == snapshot.GUNICORN_PORT:
        found.append(
            f"METRICS_PORT={snapshot.METRICS_PORT} is the same as GUNICORN_PORT: "
            "metrics must not be served on the public port."
        )
    directory = snapshot.PROMETHEUS_MULTIPROC_DIR
    if directory:
        found += _directory_problems(directory)
    if not snapshot.METRICS_PORT and snapshot.PROMETHEUS_MULTIPROC_DIR:
        found.append(
            f"PROMETHEUS_MULTIPROC_DIR={snapshot.PROMETHEUS_MULTIPROC_DIR!r} has no effect because "
            "METRICS_PORT=0 (metrics off); set METRICS_PORT or remove PROMETHEUS_MULTIPROC_DIR."
        )
    return found


def _directory_problems(directory: str) -> list[str]:
    """What start-up would meet making or emptying the directory, found without touching it."""
    named = f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not valid"
    if os.path.exists(directory) and not os.path.isdir(directory):
        return [
            f"{named}: it exists and is not a directory; name a directory (on a tmpfs), or "
            "leave it empty for a fresh one."
        ]
    if os.path.isdir(directory) and multiprocess.foreign_entries(directory):
        foreign = multiprocess.foreign_entries(directory)
        return [
            f"{named}: it holds entries other than metrics files ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}), and only those are removed at start; "
            "name a directory of its own."
        ]
    nearest = _nearest_existing(directory)
    kind = _file_system(nearest)
    if kind in PSEUDO_FILE_SYSTEMS:
        return [
            f"{named}: it is on the kernel's {kind} file system, where no metrics files can "
            "be made; name a directory on a tmpfs such as /dev/shm/metrics."
        ]
    if not os.access(nearest, os.W_OK | os.X_OK):
        return [
            f"{named}: this user cannot write to it; name a writable directory, or leave it "
            "empty for a fresh one."
        ]
    return []


# File systems the kernel presents, where files cannot be made (or making a
# directory means something else: a cgroup). Root passes every permission check
# there, so it is asked by name.
PSEUDO_FILE_SYSTEMS = frozenset(
    {
        "proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs",
        "configfs", "bpf", "pstore", "efivarfs", "fusectl", "mqueue", "binfmt_misc",
        "selinuxfs", "nsfs", "autofs", "rpc_pipefs",
    }
)  # fmt: skip


def _file_system(path: str) -> str | None:
    """The type of the file system ``path`` is on, from /proc/self/mountinfo (the
    mount point that is the longest prefix of its real path)."""
    real = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[4].replace("\\040", " ")
                fs_type = fields[fields.index("-") + 1]
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fs_type
    except (OSError, ValueError, IndexError):
        return None
    return kind


def _nearest_existing(path: str) -> str:
    """``path`` or the closest ancestor of it that exists (what mkdir would write to)."""
    while not os.path.exists(path):
        path = os.path.dirname(path.rstrip("/")) or "/"
    return path


def health_problems(snapshot: Snapshot) -> list[str]:
    found = []
    if "cache" in snapshot.HEALTH_CHECKS and not snapshot.CACHE_URL:
        found.append(
            "HEALTH_CHECKS includes cache but CACHE_URL is empty: there is no cache server "
            "to check; set CACHE_URL or remove cache from HEALTH_CHECKS."
        )
    if snapshot.HEALTH_PATH == snapshot.HEALTH_LIVE_PATH:
        found.append(
            f"HEALTH_PATH and HEALTH_LIVE_PATH are both {snapshot.HEALTH_PATH!r}: readiness and "
            "liveness answer different questions; give each its own path."
        )
    return found


def websocket_problems(snapshot: Snapshot) -> list[str]:
    if (
        not snapshot.WEBSOCKET_PING_INTERVAL
        and snapshot.source("WEBSOCKET_PING_TIMEOUT") != DEFAULT
    ):
        return [
            f"WEBSOCKET_PING_TIMEOUT={snapshot.WEBSOCKET_PING_TIMEOUT:g} has no effect because "
            "WEBSOCKET_PING_INTERVAL=0 (no pings); set WEBSOCKET_PING_INTERVAL or remove the "
            "timeout."
        ]
    return []


FRESH_WORKER_SHARE = 0.75  # of WORKER_MAX_MEMORY_MIB a worker may take before any request

Rule = Callable[[Snapshot], list[str]]
RULES: list[Rule] = [
    recycling_problems,
    database.database_problems,
    health_problems,
    metrics_problems,
    command_line.cmd_args_problems,
    websocket_problems,
    tracing.problems,
]
WARNINGS: list[Rule] = []  # a project's own (@warning); the runtime's are in warnings()


def rule(function: Rule) -> Rule:
    """Add a project's own rule (a function from the snapshot to problem lines), run
    with the runtime's by :func:`check`; usable as a decorator."""
    if function not in RULES:
        RULES.append(function)
    return function


def warning(function: Rule) -> Rule:
    """Add a project's own warning (a function from the snapshot to lines about
    values that are legal but unwise), given with the runtime's by :func:`warnings`
    at start-up and by ``check-env``; usable as a decorator."""
    if function not in WARNINGS:
        WARNINGS.append(function)
    return function


def problems(snapshot: Snapshot) -> list[str]:
    """Every problem with this configuration, one line each, in a stable order."""
    found = list(snapshot.problems)
    for each in RULES:
        try:
            found += each(snapshot)
        except ConfigError:
            continue  # the rule reads a value that did not parse; its line is listed
    return found


def check(snapshot: Snapshot) -> None:
    """Stop with every problem, one ``configuration error:`` line each, or return."""
    found = problems(snapshot)
    if found:
        raise ConfigError(*found)


# The header fields a kubelet's HTTP probe sends: Host, User-Agent, Accept and
# Connection (it never keeps a connection alive), before any httpHeaders of its own.
KUBELET_PROBE_FIELDS = 4


def warnings(
    snapshot: Snapshot, *, fresh_worker_bytes: int | None = None, **gunicorn: Any
) -> list[str]:
    """Legal but unwise: one line each, logged at start-up and shown by ``check-env``.

    ``gunicorn`` holds the values Gunicorn really uses, by its setting's name
    (``timeout=``, ``graceful_timeout=``, ``threads=``, ``limit_request_fields=``,
    ``forwarded_allow_ips=``), where they are known (at start-up, from Gunicorn's
    own configuration, which command-line flags may have changed too); any not
    given is the snapshot's, GUNICORN_CMD_ARGS over the variable.
    ``fresh_worker_bytes`` is what a worker takes before its first request (the
    master's memory once it has loaded the app), where known."""

    def value(setting: str) -> Any:
        if setting in gunicorn:
            return gunicorn[setting]
        return gunicorn_value(snapshot, command_line.GUNICORN_SETTINGS[setting])

    found = []
    limit = snapshot.WORKER_MAX_MEMORY_MIB * memory.MIB
    if limit and fresh_worker_bytes and fresh_worker_bytes > limit * FRESH_WORKER_SHARE:
        found.append(
            f"WORKER_MAX_MEMORY_MIB={snapshot.WORKER_MAX_MEMORY_MIB} leaves a worker little room: "
            f"it takes about {fresh_worker_bytes // memory.MIB} MiB before its first request, "
            "so it would be replaced after a few; raise it."
        )
    timeout, graceful_timeout = value("timeout"), value("graceful_timeout")
    if graceful_timeout < timeout:
        found.append(
            f"GUNICORN_GRACEFUL_TIMEOUT={graceful_timeout} is shorter than GUNICORN_TIMEOUT="
            f"{timeout}: a request that may run {timeout}s is cancelled after {graceful_timeout}s "
            "when its worker stops (deploys, recycling); make the graceful timeout at least "
            "the timeout."
        )
    threads = value("threads")
    pooled = snapshot.DB_POOL and snapshot.DATABASE_URL.startswith(("postgres://", "postgresql://"))
    if pooled and threads > snapshot.DB_POOL_MAX_SIZE:
        found.append(
            f"GUNICORN_THREADS={threads} is more than "
            f"DB_POOL_MAX_SIZE={snapshot.DB_POOL_MAX_SIZE}: "
            "synchronous views that need the database can wait up to DB_POOL_TIMEOUT for a "
            "connection; fine if many views never touch it."
        )
    fields = value("limit_request_fields")
    if fields < KUBELET_PROBE_FIELDS:
        found.append(
            f"GUNICORN_LIMIT_REQUEST_FIELDS={fields} is fewer than the {KUBELET_PROBE_FIELDS} "
            "header fields a kubelet's HTTP probe sends: every probe is answered 431 and the "
            "pod never becomes ready; keep Gunicorn's default of 100."
        )
    if command_line.as_text(value("forwarded_allow_ips")) == "*":
        found.append(
            "GUNICORN_FORWARDED_ALLOW_IPS=* trusts X-Forwarded-For and X-Forwarded-Proto from "
            "every client: any client can claim another address (the access log, Django's "
            "REMOTE_ADDR) and https; name your ingress's network instead, e.g. 10.0.0.0/8."
        )
    for each in WARNINGS:
        try:
            found += each(snapshot)
        except ConfigError:
            continue
    return found
