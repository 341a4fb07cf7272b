"""The ASGI application: a project's Django behind the runtime's layers.

A project's ``asgi.py`` changes one line, the import::

    from django_k8s_runtime.asgi import get_asgi_application

    application = get_asgi_application()

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
6. ``DjangoApplication``: Django itself, each request in one visit to one of the
   worker's threads; a synchronous view runs there, an async view on the event
   loop (server/handler.py).

Each layer gets what it needs as arguments here; none imports another. With
metrics on, each worker also publishes its saturation once a second (threads busy
and waiting, async requests, the database pools), the thread pool reports a
request's wait for a thread, and Django's exceptions are counted.
"""

from __future__ import annotations

from functools import partial
from typing import Any


def get_asgi_application() -> Any:
    """Set Django up (as ``django.core.asgi.get_asgi_application`` does) and return
    the project's application inside the runtime's layers."""
    import django

    django.setup(set_prefix=False)
    from django.conf import global_settings, settings
    from django.urls import get_resolver

    from django_k8s_runtime import reporting

    if (
        settings.DEFAULT_EXCEPTION_REPORTER_FILTER
        == global_settings.DEFAULT_EXCEPTION_REPORTER_FILTER
    ):
        # Django's own filter shows a URL setting's password (reporting.py).
        settings.DEFAULT_EXCEPTION_REPORTER_FILTER = reporting.FILTER

    # Import the URLconf (and with it every view module) now: with GUNICORN_PRELOAD
    # that happens once in the master, so no worker pays for it on its first request.
    get_resolver().url_patterns  # noqa: B018

    from django_k8s_runtime import database
    from django_k8s_runtime import settings as runtime_settings
    from django_k8s_runtime.server import threads
    from django_k8s_runtime.server.handler import DjangoApplication
    from django_k8s_runtime.server.threads import ThreadPool
    from django_k8s_runtime.server.worker_state import this_worker

    snapshot = runtime_settings.checked()
    if snapshot.DB_REQUEST_TIMEOUTS:
        # In the worker, before its first connection: bounded by its request timeout.
        this_worker.when_serving(
            lambda: database.bound_by_request(
                settings.DATABASES, this_worker.request_timeout() or snapshot.GUNICORN_TIMEOUT
            )
        )
    app_metrics = _metrics(snapshot)

    def requests_pool() -> ThreadPool:
        # The worker's pool, made after the fork, sized by Gunicorn's effective threads.
        return threads.requests_pool(
            this_worker.threads() or snapshot.GUNICORN_THREADS,
            on_wait=app_metrics.thread_waited if app_metrics is not None else None,
        )

    django_application = DjangoApplication(
        threads=requests_pool,
        waiting_threads=threads.waiting_pool,
        max_requests=lambda: this_worker.connections() or snapshot.GUNICORN_WORKER_CONNECTIONS,
    )
    if app_metrics is not None:
        this_worker.every(
            SATURATION_SECONDS,
            partial(_record_saturation, app_metrics, requests_pool, django_application),
        )
    return stack(django_application)


SATURATION_SECONDS = 1.0  # how often each worker publishes its saturation gauges


def _metrics(snapshot: Any) -> Any:
    """The metrics, wired to what reports into them; None when METRICS_PORT is 0."""
    from django_k8s_runtime.observability import metrics
    from django_k8s_runtime.observability.exceptions import count_exceptions
    from django_k8s_runtime.server.worker_state import this_worker

    if not snapshot.METRICS_PORT:  # the one decision; the Gunicorn config binds the port on it
        return None
    metrics.prepare_directory(snapshot.PROMETHEUS_MULTIPROC_DIR)  # done already in Gunicorn
    app_metrics = metrics.get()
    this_worker.count_dropped_connections(app_metrics.connection_dropped)
    count_exceptions(app_metrics.exception_raised)
    return app_metrics


def _record_saturation(app_metrics: Any, requests_pool: Any, django_application: Any) -> None:
    """Once a second in each worker: its threads, its async requests, its pools."""
    from django_k8s_runtime import database

    pool = requests_pool()
    app_metrics.record_saturation(
        threads=pool.size,
        busy=pool.busy,
        waiting=pool.waiting,
        async_in_flight=django_application.async_in_flight,
    )
    app_metrics.record_database_pools(database.pool_stats())


def stack(django_application: Any) -> Any:
    """Layers 1-5 around a Django ASGI application (``make bench`` also puts them
    around Django's own ``ASGIHandler``, to compare like with like). Django must be
    set up."""
    from django_k8s_runtime import env, settings
    from django_k8s_runtime.health.checks import CannotLoadChecks, configured_checks
    from django_k8s_runtime.health.probes import ROUTES as PROBE_ROUTES
    from django_k8s_runtime.health.probes import Probes
    from django_k8s_runtime.observability import metrics
    from django_k8s_runtime.observability.observer import RequestObserver
    from django_k8s_runtime.server import threads
    from django_k8s_runtime.server.limits import BodyLimit
    from django_k8s_runtime.server.timeout import RequestTimeout
    from django_k8s_runtime.server.worker_state import this_worker

    snapshot = settings.checked()
    app_metrics = _metrics(snapshot)
    try:
        checks = configured_checks(
            snapshot.HEALTH_CHECKS,
            timeout=snapshot.HEALTH_CHECK_TIMEOUT,
            cache_seconds=snapshot.HEALTH_CACHE_SECONDS,
            # A project's synchronous checks run in the worker's background pool.
            run_in_thread=lambda function: threads.waiting_pool().run(function),
        )
    except CannotLoadChecks as error:  # at start-up, before any worker serves
        raise env.ConfigError(*error.lines) from None
    probes = Probes(
        BodyLimit(django_application, max_bytes=snapshot.REQUEST_MAX_BODY_SIZE),
        checks,
        draining=this_worker.is_draining,
    )
    application: Any = RequestTimeout(probes, seconds=this_worker.request_timeout)
    application = RequestObserver(
        application,
        access_log=snapshot.GUNICORN_ACCESS_LOG,
        quiet_routes=() if snapshot.LOG_PROBES else PROBE_ROUTES,
        metrics=app_metrics,
    )
    if app_metrics is not None:
        application = metrics.MetricsEndpoint(
            application,
            port=snapshot.METRICS_PORT,
            registry=metrics.multiprocess_registry(),
            before_scrape=partial(_record_readiness, probes, app_metrics),
        )
    return application


async def _record_readiness(probes: Any, app_metrics: Any) -> None:
    """Before each scrape: app_ready and app_health_check_ok as /health would answer now."""
    readiness = await probes.readiness()
    app_metrics.record_readiness(readiness.ready, {c.name: c.ok for c in readiness.checks})
