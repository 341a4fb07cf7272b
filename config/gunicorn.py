"""The Gunicorn config module: every server setting comes from the environment.

Used as ``gunicorn -c python:config.gunicorn config.asgi:application`` (the
Dockerfile and ``make run`` do exactly that; ``./gunicorn.conf.py`` points here
too). Gunicorn reads this module in the master before forking, so it is also
where the whole environment is validated: a mistake stops the server here with
one line per problem, before any worker boots. ``GUNICORN_CMD_ARGS`` and
command-line flags still override what is set here, as Gunicorn users expect.
"""

from __future__ import annotations

import importlib
import logging
import os

from config import env
from observability import metrics
from server import cpu, lifecycle

env.check()
_metrics_port = env.METRICS_PORT.value()
if _metrics_port:
    # Before the app (and prometheus_client) is imported: multiprocess mode.
    metrics.prepare_directory(env.PROMETHEUS_MULTIPROC_DIR.value())
# Import the Django settings module too (it is plain Python; Django is not set
# up here) so its own rules, such as the required secret key, fail in the master.
_settings = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"))

_workers = env.GUNICORN_WORKERS.value()
_cpu_limit = None
if _workers == "auto":
    _cpu_limit = cpu.cpu_limit()
    _workers = cpu.auto_workers(_cpu_limit)

wsgi_app = "config.asgi:application"
worker_class = "server.worker.UvicornWorker"
workers = _workers
threads = env.GUNICORN_THREADS.value()  # per worker, for synchronous views (server/threads.py)
preload_app = env.GUNICORN_PRELOAD.value()
_host = env.GUNICORN_HOST.value()
_host = f"[{_host}]" if ":" in _host else _host
bind = [f"{_host}:{env.GUNICORN_PORT.value()}"]
if _metrics_port:
    bind.append(f"{_host}:{_metrics_port}")  # /metrics only; see observability/metrics.py
timeout = env.GUNICORN_TIMEOUT.value()
graceful_timeout = env.GUNICORN_GRACEFUL_TIMEOUT.value()
keepalive = env.GUNICORN_KEEPALIVE.value()
max_requests = env.GUNICORN_MAX_REQUESTS.value()
max_requests_jitter = env.GUNICORN_MAX_REQUESTS_JITTER.value()
forwarded_allow_ips = env.GUNICORN_FORWARDED_ALLOW_IPS.value()
loglevel = env.GUNICORN_LOG_LEVEL.value()
logconfig_dict = _settings.LOGGING
errorlog = "-"
accesslog = None  # the application writes the access log (observability.observer)
# The heartbeat file is touched several times a second: keep it off the (possibly
# read-only, possibly slow) root file system.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - a tmpfs, on purpose
if env.GUNICORN_CONTROL_SOCKET.value():
    control_socket = env.GUNICORN_CONTROL_SOCKET.value()
else:
    control_socket_disable = True

_shutdown_delay = env.GUNICORN_SHUTDOWN_DELAY.value()


def child_exit(arbiter, worker):
    if _metrics_port:
        metrics.worker_exited(worker.pid)


def on_exit(arbiter):
    if _metrics_port:
        metrics.remove_directory()


def when_ready(arbiter):
    lifecycle.install_shutdown_delay(arbiter, _shutdown_delay)
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
