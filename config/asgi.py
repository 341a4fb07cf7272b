"""The ASGI application Gunicorn's Uvicorn workers serve, layer by layer.

Outermost first:

1. ``MetricsEndpoint``: /metrics, on the metrics port only (observability/).
2. ``Observer``: request id, access log and request metrics for every request.
3. ``RequestTimeout``: 504 after Gunicorn's timeout (server/), which the worker
   records in ``this_worker`` when it starts serving.
4. ``Probes``: /health and /health/live, answered before Django (health/).
5. Django itself (config/settings.py, config/urls.py).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from django.urls import get_resolver  # noqa: E402

# Import the URLconf (and with it every view module) now: with GUNICORN_PRELOAD
# that happens once in the master, so no worker pays for it on its first request.
get_resolver().url_patterns  # noqa: B018

from config import env  # noqa: E402 - Django must be set up first
from health.checks import configured_checks  # noqa: E402
from health.probes import Probes  # noqa: E402
from observability import metrics  # noqa: E402
from observability.observer import Observer  # noqa: E402
from server.timeout import RequestTimeout  # noqa: E402
from server.worker_state import this_worker  # noqa: E402

ENV = env.snapshot()
_metrics = None
if ENV.METRICS_PORT:  # the one decision: config/gunicorn.py binds the port on the same test
    metrics.prepare_directory(ENV.PROMETHEUS_MULTIPROC_DIR)  # done already under Gunicorn
    _metrics = metrics.get()

probes = Probes(
    django_application,
    configured_checks(
        ENV.HEALTH_CHECKS,
        timeout=ENV.HEALTH_CHECK_TIMEOUT,
        cache_seconds=ENV.HEALTH_CACHE_SECONDS,
    ),
    draining=this_worker.is_draining,
    on_readiness=_metrics.readiness_computed if _metrics else None,
)
application = Observer(
    RequestTimeout(probes, seconds=this_worker.request_timeout),
    access_log=ENV.GUNICORN_ACCESS_LOG,
    log_probes=ENV.LOG_PROBES,
    metrics=_metrics,
)
if _metrics is not None:
    application = metrics.MetricsEndpoint(
        application, port=ENV.METRICS_PORT, refresh=probes.readiness
    )
