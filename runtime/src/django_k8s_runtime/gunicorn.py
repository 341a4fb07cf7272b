"""The Gunicorn config module: every server setting comes from the environment.

Used as ``gunicorn -c python:django_k8s_runtime.gunicorn mysite.asgi:application``,
the application being a project's ASGI entry built with
:func:`django_k8s_runtime.asgi.get_asgi_application`.

Gunicorn reads this module in the master before forking, so it is also where the
whole environment is validated (:mod:`.validation`): mistakes stop the server
here, one line per problem and all of them at once, before any worker boots. The
project's settings module (``DJANGO_SETTINGS_MODULE``, when set) is imported
first, so that the project's own variables and rules are checked with the
runtime's. ``GUNICORN_CMD_ARGS`` and command-line flags still override what is
set here, as Gunicorn users expect.
"""

from __future__ import annotations

import importlib
import logging
import os

from django_k8s_runtime import env, validation
from django_k8s_runtime.observability import logconfig as _logconfig
from django_k8s_runtime.observability import metrics
from django_k8s_runtime.server import cpu, drain, limits

# The project's settings first: it declares its own variables and rules (and may
# check them all itself). Plain Python; Django is not set up here.
if os.environ.get("DJANGO_SETTINGS_MODULE"):
    importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
ENV = env.snapshot()
validation.check(ENV)
if ENV.METRICS_PORT:
    # Before the app (and prometheus_client) is imported: multiprocess mode.
    try:
        metrics.prepare_directory(ENV.PROMETHEUS_MULTIPROC_DIR)
    except OSError as error:
        raise env.ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR={ENV.PROMETHEUS_MULTIPROC_DIR!r} cannot be used: "
            f"{error.strerror}."
        ) from None

_workers = ENV.GUNICORN_WORKERS
_cpu_limit = None
if _workers == "auto":
    _cpu_limit = cpu.cpu_limit()
    _workers = cpu.auto_workers(_cpu_limit)

worker_class = "django_k8s_runtime.server.worker.UvicornWorker"
workers = _workers
threads = ENV.GUNICORN_THREADS  # per worker, for synchronous views (server/threads.py)
worker_connections = ENV.GUNICORN_WORKER_CONNECTIONS  # requests and connections per worker
limit_request_line = ENV.GUNICORN_LIMIT_REQUEST_LINE  # enforced by server/protocol.py
limit_request_fields = ENV.GUNICORN_LIMIT_REQUEST_FIELDS
limit_request_field_size = ENV.GUNICORN_LIMIT_REQUEST_FIELD_SIZE
preload_app = ENV.GUNICORN_PRELOAD
_host = ENV.GUNICORN_HOST
_host = f"[{_host}]" if ":" in _host else _host
bind = [f"{_host}:{ENV.GUNICORN_PORT}"]
if ENV.METRICS_PORT:
    bind.append(f"{_host}:{ENV.METRICS_PORT}")  # /metrics only; see observability/metrics.py
timeout = ENV.GUNICORN_TIMEOUT
graceful_timeout = ENV.GUNICORN_GRACEFUL_TIMEOUT
keepalive = ENV.GUNICORN_KEEPALIVE
max_requests = ENV.GUNICORN_MAX_REQUESTS
max_requests_jitter = ENV.GUNICORN_MAX_REQUESTS_JITTER
forwarded_allow_ips = ENV.GUNICORN_FORWARDED_ALLOW_IPS
loglevel = ENV.GUNICORN_LOG_LEVEL
# The same logging for the master and every worker as settings.logging() gives Django.
logconfig_dict = _logconfig.logging_config(
    log_format=ENV.LOG_FORMAT, level=ENV.LOG_LEVEL, server_level=ENV.GUNICORN_LOG_LEVEL
)
errorlog = "-"
accesslog = None  # the application writes the access log (observability.observer)
# The heartbeat file is touched several times a second: keep it off the (possibly
# read-only, possibly slow) root file system.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - a tmpfs, on purpose
if ENV.GUNICORN_CONTROL_SOCKET:
    control_socket = ENV.GUNICORN_CONTROL_SOCKET
else:
    control_socket_disable = True

_shutdown_delay = ENV.GUNICORN_SHUTDOWN_DELAY


def post_fork(arbiter, worker):
    # The connection's bounds, which Gunicorn's settings have no place for.
    worker.bounds = limits.ConnectionLimits(
        head_timeout=ENV.REQUEST_HEAD_TIMEOUT,
        send_timeout=ENV.RESPONSE_SEND_TIMEOUT,
        connections=worker.cfg.worker_connections,
    )


def child_exit(arbiter, worker):
    if ENV.METRICS_PORT:
        metrics.worker_exited(worker.pid)


def on_exit(arbiter):
    if ENV.METRICS_PORT:
        metrics.remove_directory()


def when_ready(arbiter):
    drain.install_shutdown_delay(arbiter, _shutdown_delay)
    log = logging.getLogger("gunicorn.error")
    if _cpu_limit is not None:
        log.info(
            "GUNICORN_WORKERS=auto: %d workers = max(%d, ceil(%.3g CPUs from %s))",
            arbiter.cfg.workers,
            cpu.MIN_WORKERS,
            _cpu_limit.cpus,
            _cpu_limit.source,
        )
    budget = _shutdown_delay + arbiter.cfg.graceful_timeout
    log.info(
        "Shutdown budget: %.3gs delay + %ss graceful = %.3gs; give the pod "
        "terminationGracePeriodSeconds >= %d",
        _shutdown_delay,
        arbiter.cfg.graceful_timeout,
        budget,
        int(budget) + 5,
    )
    for line in validation.warnings(
        ENV,
        timeout=arbiter.cfg.timeout,
        graceful_timeout=arbiter.cfg.graceful_timeout,
        threads=arbiter.cfg.threads,
    ):
        log.warning("configuration warning: %s", line)
