"""The ASGI application Gunicorn's Uvicorn workers serve, layer by layer.

Outermost first:

1. ``MetricsEndpoint``: /metrics, on the metrics port only (observability/).
2. ``Observer``: request id, access log and request metrics for every request.
3. ``RequestTimeout``: 504 after Gunicorn's timeout (server/; the worker sets it).
4. ``Probes``: /health and /health/live, answered before Django (health/).
5. ``DjangoApplication``: Django itself (config/settings.py, config/urls.py), each
   request in one visit to one of the worker's threads; a synchronous view runs
   there, an async view on the event loop (server/handler.py).
"""

import functools
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does

from django.urls import get_resolver  # noqa: E402

# Import the URLconf (and with it every view module) now: with GUNICORN_PRELOAD
# that happens once in the master, so no worker pays for it on its first request.
get_resolver().url_patterns  # noqa: B018

from config import env  # noqa: E402 - Django must be set up first
from health.checks import configured_checks  # noqa: E402
from health.probes import Probes  # noqa: E402
from observability import metrics  # noqa: E402
from observability.observer import Observer  # noqa: E402
from server import threads  # noqa: E402
from server.handler import DjangoApplication  # noqa: E402
from server.timeout import RequestTimeout  # noqa: E402

django_application = DjangoApplication(
    threads=functools.partial(threads.requests_pool, env.GUNICORN_THREADS.value()),
    waiting_threads=threads.waiting_pool,
)

_metrics = metrics.get() if metrics.enabled() else None

probes = Probes(
    django_application,
    configured_checks(
        env.HEALTH_CHECKS.value(),
        timeout=env.HEALTH_CHECK_TIMEOUT.value(),
        cache_seconds=env.HEALTH_CACHE_SECONDS.value(),
    ),
    on_readiness=_metrics.readiness_computed if _metrics else None,
)
application = Observer(
    RequestTimeout(probes),
    access_log=env.GUNICORN_ACCESS_LOG.value(),
    log_probes=env.LOG_PROBES.value(),
    metrics=_metrics,
)
if _metrics is not None:
    application = metrics.MetricsEndpoint(
        application, port=env.METRICS_PORT.value(), refresh=probes.readiness
    )
