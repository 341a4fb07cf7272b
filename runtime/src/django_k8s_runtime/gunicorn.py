"""The Gunicorn config module: every server setting comes from the environment.

Used as ``gunicorn -c python:django_k8s_runtime.gunicorn mysite.asgi:application``,
the application being a project's ASGI entry built with
:func:`django_k8s_runtime.asgi.get_asgi_application`.

Gunicorn reads this module in the master before forking, so it is also where the
whole environment is validated (:mod:`.validation`): mistakes stop the server
here, one line per problem and all of them at once, before any worker boots. The
project's settings module (``DJANGO_SETTINGS_MODULE``, when set) is imported
first, so that the project's own variables and rules are checked with the
runtime's; when it is not set (the documented command: the project's ASGI module
names its settings) and the runtime's variables have problems, the application
is imported to find the project's, so that every mistake is still listed at
once. ``GUNICORN_CMD_ARGS`` and command-line flags still override what is set
here, as Gunicorn users expect; ``GUNICORN_CMD_ARGS`` is checked with the rest.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

from django_k8s_runtime import command_line, env, gunicorn_args, validation
from django_k8s_runtime.observability import logconfig as _logconfig
from django_k8s_runtime.observability import metrics, multiprocess
from django_k8s_runtime.server import cpu, drain, exits, limits, memory

# Nothing to import: Gunicorn reads this module's settings and hooks (-c python:...).
__all__: list[str] = []


def _check_with_the_project() -> None:
    """Stop with the runtime's problems and the project's together.

    Without DJANGO_SETTINGS_MODULE the project's variables are declared only when
    its application is imported (its ASGI module names the settings): import it
    now, as preloading would. Its settings stop with every problem, the runtime's
    included, or Django is set up and the checked snapshot has them all. Only on
    the way out: a server that starts imports its application where
    GUNICORN_PRELOAD says."""
    from gunicorn.util import import_app

    application = gunicorn_args.application(sys.argv[1:])
    if application and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        try:
            import_app(application)
        except env.ConfigError:
            raise
        except Exception:  # noqa: S110 - the runtime's problems are reported below
            pass
    validation.check(env.snapshot())


# The project's settings first: it declares its own variables and rules (and may
# check them all itself). Plain Python; Django is not set up here.
if os.environ.get("DJANGO_SETTINGS_MODULE"):
    importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
snapshot = env.snapshot()
if validation.problems(snapshot):
    _check_with_the_project()
if snapshot.METRICS_PORT:
    # Before the app (and prometheus_client) is imported: multiprocess mode.
    try:
        multiprocess.prepare_directory(snapshot.PROMETHEUS_MULTIPROC_DIR)
    except OSError as error:
        raise env.ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR={snapshot.PROMETHEUS_MULTIPROC_DIR!r} cannot be used: "
            f"{error.strerror}."
        ) from None

_workers = snapshot.GUNICORN_WORKERS
_cpu_limit = None
if _workers == "auto":
    _cpu_limit = cpu.cpu_limit()
    _workers = cpu.auto_workers(_cpu_limit)

worker_class = command_line.WORKER_CLASS
workers = _workers
threads = snapshot.GUNICORN_THREADS  # per worker, for synchronous views (server/threads.py)
worker_connections = snapshot.GUNICORN_WORKER_CONNECTIONS  # requests and connections per worker
limit_request_line = snapshot.GUNICORN_LIMIT_REQUEST_LINE  # enforced by server/protocol.py
limit_request_fields = snapshot.GUNICORN_LIMIT_REQUEST_FIELDS
limit_request_field_size = snapshot.GUNICORN_LIMIT_REQUEST_FIELD_SIZE
preload_app = snapshot.GUNICORN_PRELOAD
_host = snapshot.GUNICORN_HOST
_host = f"[{_host}]" if ":" in _host else _host
bind = [f"{_host}:{snapshot.GUNICORN_PORT}"]
if snapshot.METRICS_PORT:
    bind.append(f"{_host}:{snapshot.METRICS_PORT}")  # /metrics only; see observability/metrics.py
timeout = snapshot.GUNICORN_TIMEOUT
graceful_timeout = snapshot.GUNICORN_GRACEFUL_TIMEOUT
keepalive = snapshot.GUNICORN_KEEPALIVE
max_requests = snapshot.GUNICORN_MAX_REQUESTS
max_requests_jitter = snapshot.GUNICORN_MAX_REQUESTS_JITTER
forwarded_allow_ips = snapshot.GUNICORN_FORWARDED_ALLOW_IPS
loglevel = snapshot.GUNICORN_LOG_LEVEL
# The same logging for the master and every worker as settings.logging() gives Django.
logconfig_dict = _logconfig.logging_config(
    log_format=snapshot.LOG_FORMAT,
    level=snapshot.LOG_LEVEL,
    server_level=snapshot.GUNICORN_LOG_LEVEL,
)
errorlog = "-"
accesslog = None  # the application writes the access log (observability.observer)
# The heartbeat file is touched several times a second: keep it off the (possibly
# read-only, possibly slow) root file system.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - a tmpfs, on purpose
if snapshot.GUNICORN_CONTROL_SOCKET:
    control_socket = snapshot.GUNICORN_CONTROL_SOCKET
else:
    control_socket_disable = True

_shutdown_delay = snapshot.GUNICORN_SHUTDOWN_DELAY


def pre_fork(arbiter: Any, worker: Any) -> None:
    exits.give_note(worker)  # where the worker says why it left (server/exits.py)


def post_fork(arbiter: Any, worker: Any) -> None:
    # The connection's bounds and the memory limit, which Gunicorn's settings have
    # no place for.
    worker.bounds = limits.ConnectionLimits(
        head_timeout=snapshot.REQUEST_HEAD_TIMEOUT,
        send_timeout=snapshot.RESPONSE_SEND_TIMEOUT,
        connections=worker.cfg.worker_connections,
        body_min_rate=snapshot.REQUEST_BODY_MIN_RATE,
        body_grace=snapshot.REQUEST_BODY_GRACE,
    )
    worker.max_memory = snapshot.WORKER_MAX_MEMORY_MIB * memory.MIB or None


def child_exit(arbiter: Any, worker: Any) -> None:
    cause = exits.cause_of_exit(worker)
    if snapshot.METRICS_PORT:
        metrics.worker_exited(worker.pid, cause)


def when_ready(arbiter: Any) -> None:
    drain.install_shutdown_delay(arbiter, _shutdown_delay)
    memory.replace_while_draining(arbiter)  # a worker recycled for memory: its successor now
    if snapshot.METRICS_PORT:
        metrics.get().expect_worker_exits(exits.CAUSES)
    log = logging.getLogger("gunicorn.error")
    if _cpu_limit is not None and "workers" not in snapshot.GUNICORN_CMD_ARGS:
        log.info("GUNICORN_WORKERS=auto: %s", cpu.describe(_cpu_limit))
        cpu.follow_the_quota(arbiter, _cpu_limit)  # an in-place resize moves the count
    budget = _shutdown_delay + arbiter.cfg.graceful_timeout
    log.info(
        "Shutdown budget: %.3gs delay + %ss graceful = %.3gs; give the pod "
        "terminationGracePeriodSeconds >= %d",
        _shutdown_delay,
        arbiter.cfg.graceful_timeout,
        budget,
        int(budget) + 5,
    )
    # The snapshot again: a preloaded application has declared the project's variables.
    for line in validation.warnings(
        env.snapshot(),
        timeout=arbiter.cfg.timeout,
        graceful_timeout=arbiter.cfg.graceful_timeout,
        threads=arbiter.cfg.threads,
        limit_request_fields=arbiter.cfg.limit_request_fields,
        forwarded_allow_ips=arbiter.cfg.forwarded_allow_ips,
        fresh_worker_bytes=memory.resident_bytes() if memory.measurable() else None,
    ):
        log.warning("configuration warning: %s", line)
