"""The ASGI application Gunicorn's Uvicorn workers serve.

Layers, outermost first:

1. ``Observer``: request id and access log for every request (observability/).
2. ``Probes``: /health and /health/live, answered before Django (health/).
3. Django itself.

The request timeout is applied by the worker (server/worker.py), because it is
Gunicorn's ``timeout`` setting that it enforces.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from config import env  # noqa: E402 - Django must be set up first
from health.checks import configured_checks  # noqa: E402
from health.probes import Probes  # noqa: E402
from observability.observer import Observer  # noqa: E402

application = Observer(
    Probes(
        django_application,
        configured_checks(
            env.HEALTH_CHECKS.value(),
            timeout=env.HEALTH_CHECK_TIMEOUT.value(),
            cache_seconds=env.HEALTH_CACHE_SECONDS.value(),
        ),
    ),
    access_log=env.GUNICORN_ACCESS_LOG.value(),
    log_probes=env.LOG_PROBES.value(),
)
