"""The ASGI application Gunicorn's Uvicorn workers serve, layer by layer.

Outermost first:

1. ``MetricsEndpoint``: /metrics, on the metrics port only, when METRICS_PORT is
   not 0; before each scrape it records readiness (observability/).
2. ``RequestObserver``: request id, access log and request metrics for every
   request; the probes' routes stay out of the access log unless LOG_PROBES.
3. ``RequestTimeout``: 504 after Gunicorn's timeout (server/), which the worker
   records in ``this_worker`` when it starts serving.
4. ``Probes``: /health and /health/live, answered before Django (health/); a
   readiness probe fails once ``this_worker`` is draining.
5. ``BodyLimit``: 413 for a body over REQUEST_MAX_BODY_SIZE, before it is read
   (server/limits.py; the request head's limits are in the HTTP protocol).
6. ``DjangoApplication``: Django itself (config/settings.py, config/urls.py), each
   request in one visit to one of the worker's threads; a synchronous view runs
   there, an async view on the event loop (server/handler.py).

Each layer gets what it needs as arguments here; none imports another.
"""

import os
from functools import partial
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does

from django.urls import get_resolver  # noqa: E402

# Import the URLconf (and with it every view module) now: with GUNICORN_PRELOAD
# that happens once in the master, so no worker pays for it on its first request.
get_resolver().url_patterns  # noqa: B018

from config import env  # noqa: E402 - Django must be set up first
from health.checks import configured_checks  # noqa: E402
from health.probes import ROUTES as PROBE_ROUTES  # noqa: E402
from health.probes import Probes  # noqa: E402
from observability import metrics  # noqa: E402
from observability.observer import RequestObserver  # noqa: E402
from server import threads  # noqa: E402
from server.handler import DjangoApplication  # noqa: E402
from server.limits import BodyLimit  # noqa: E402
from server.timeout import RequestTimeout  # noqa: E402
from server.worker_state import this_worker  # noqa: E402


async def record_readiness(probes: Probes, app_metrics: metrics.Metrics) -> None:
    """Before each scrape: app_ready and app_health_check_ok as /health would answer now."""
    readiness = await probes.readiness()
    app_metrics.record_readiness(readiness.ready, {c.name: c.ok for c in readiness.checks})


ENV = env.snapshot()
app_metrics = None
if ENV.METRICS_PORT:  # the one decision; config/gunicorn.py binds the port on it too
    metrics.prepare_directory(ENV.PROMETHEUS_MULTIPROC_DIR)  # done already under Gunicorn
    app_metrics = metrics.get()


def stack(django_application: Any) -> Any:
    """Layers 1-5 around a Django ASGI application (``make bench`` also puts them
    around Django's own ``ASGIHandler``, to compare like with like)."""
    probes = Probes(
        BodyLimit(django_application, max_bytes=ENV.REQUEST_MAX_BODY_SIZE),
        configured_checks(
            ENV.HEALTH_CHECKS,
            timeout=ENV.HEALTH_CHECK_TIMEOUT,
            cache_seconds=ENV.HEALTH_CACHE_SECONDS,
        ),
        draining=this_worker.is_draining,
    )
    application = RequestTimeout(probes, seconds=this_worker.request_timeout)
    application = RequestObserver(
        application,
        access_log=ENV.GUNICORN_ACCESS_LOG,
        quiet_routes=() if ENV.LOG_PROBES else PROBE_ROUTES,
        metrics=app_metrics,
    )
    if app_metrics is not None:
        application = metrics.MetricsEndpoint(
            application,
            port=ENV.METRICS_PORT,
            registry=metrics.multiprocess_registry(),
            before_scrape=partial(record_readiness, probes, app_metrics),
        )
    return application


application = stack(
    DjangoApplication(
        # The worker's pools, made after the fork, sized by Gunicorn's effective threads.
        threads=lambda: threads.requests_pool(this_worker.threads() or ENV.GUNICORN_THREADS),
        waiting_threads=threads.waiting_pool,
    )
)
