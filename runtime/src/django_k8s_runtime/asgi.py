"""The ASGI application: a project's Django behind the runtime's layers.

A project's ``asgi.py`` changes one line, the import::

    from django_k8s_runtime.asgi import get_asgi_application

    application = get_asgi_application()

A project with WebSockets (Django Channels, or any ASGI application for the
``websocket`` scope) passes that application too, or its dotted path, which is
imported once Django is set up (consumers import models)::

    application = get_asgi_application(websocket="mysite.routing.websocket_application")

HTTP goes through these layers, outermost first:

1. ``MetricsEndpoint``: /metrics, on the metrics port only, when METRICS_PORT is
   not 0; before each scrape it records readiness (observability/).
2. ``RequestObserver``: request id, access log and request metrics for every
   request; the probes' routes stay out of the access log unless LOG_PROBES. With
   an OTLP endpoint set, each request's server span too (observability/traces.py;
   the probes' only with TRACE_PROBES).
3. ``RequestTimeout``: 504 after Gunicorn's timeout (server/), which the worker
   records in ``this_worker`` when it starts serving.
4. ``Probes``: /health and /health/live (HEALTH_PATH, HEALTH_LIVE_PATH), answered
   before Django (health/); a readiness probe fails once ``this_worker`` is draining.
5. ``BodyLimit``: 413 for a body over REQUEST_MAX_BODY_SIZE, before it is read, with
   the security headers Django's middleware gives the project's responses
   (server/limits.py; the request head's limits are in the HTTP protocol).
6. ``DjangoApplication``: Django itself, each request in one visit to one of the
   worker's threads; a synchronous view runs there, an async view on the event
   loop (server/handler.py).

WebSocket connections go through their own (:func:`websocket_stack`):

1. ``SocketObserver``: request id, one access-log line when the socket closes, the
   sockets' metrics (observability/websocket.py).
2. ``HandshakeGuard``: the host check, WEBSOCKET_MAX_CONNECTIONS per worker,
   Gunicorn's timeout on the handshake, not on the open socket, 404 for a path with
   no route, and the channel layer's outage: 503, or 1012 (server/).
3. Channels' ``OriginValidator``: WEBSOCKET_ALLOWED_ORIGINS, or Django's
   ``ALLOWED_HOSTS`` (``AllowedHostsOriginValidator``).
4. The project's WebSocket application.

The worker closes open sockets with 1001 when it stops (server/websocket_protocol.py).

Each layer gets what it needs as arguments here, once: one checked configuration
snapshot and one metrics object (None when METRICS_PORT is 0) are made by
:func:`get_asgi_application` and handed down; none imports another. With metrics on,
each worker also publishes its saturation once a second (threads busy and waiting,
async requests, the database pools), the thread pool reports a request's wait for a
thread, and Django's exceptions are counted.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from inspect import markcoroutinefunction
from typing import Any

from django_k8s_runtime import database, env, leaks, tracing
from django_k8s_runtime import settings as runtime_settings
from django_k8s_runtime.asgi_types import ASGIApp, Receive, Scope, Send
from django_k8s_runtime.health.checks import CannotLoadChecks, configured_checks
from django_k8s_runtime.health.probes import Probes
from django_k8s_runtime.observability import multiprocess
from django_k8s_runtime.observability import websocket as socket_observability
from django_k8s_runtime.observability.exceptions import count_exceptions
from django_k8s_runtime.observability.metrics import PUBLISH_SECONDS, Metrics
from django_k8s_runtime.observability.metrics import get as metrics_of_this_server
from django_k8s_runtime.observability.metrics_endpoint import MetricsEndpoint
from django_k8s_runtime.observability.observer import RequestObserver
from django_k8s_runtime.server import channel_layer, security_headers, threads, websocket
from django_k8s_runtime.server.handler import DjangoApplication
from django_k8s_runtime.server.limits import BodyLimit
from django_k8s_runtime.server.threads import ThreadPool
from django_k8s_runtime.server.timeout import RequestTimeout
from django_k8s_runtime.server.websocket_guard import HandshakeGuard, refuse
from django_k8s_runtime.server.worker_state import this_worker

__all__ = ["get_asgi_application"]


def get_asgi_application(*, websocket: ASGIApp | str | None = None) -> ASGIApp:
    """Set Django up (as ``django.core.asgi.get_asgi_application`` does) and return
    the project's application inside the runtime's layers.

    ``websocket``: the project's application for WebSocket connections (a Channels
    ``URLRouter``, or any ASGI application), or its dotted path; None serves HTTP
    only."""
    import django

    django.setup(set_prefix=False)
    from django.conf import global_settings, settings
    from django.urls import get_resolver

    from django_k8s_runtime import reporting  # Django's debug views: once it is set up

    if (
        settings.DEFAULT_EXCEPTION_REPORTER_FILTER
        == global_settings.DEFAULT_EXCEPTION_REPORTER_FILTER
    ):
        # Django's own filter shows a URL setting's password (reporting.py).
        settings.DEFAULT_EXCEPTION_REPORTER_FILTER = reporting.FILTER

    # Import the URLconf (and with it every view module) now: with GUNICORN_PRELOAD
    # that happens once in the master, so no worker pays for it on its first request.
    get_resolver().url_patterns  # noqa: B018

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
            after_job=database.give_back_connections,
        )

    django_application = DjangoApplication(
        threads=requests_pool,
        background_threads=background_pool,
        max_requests=lambda: this_worker.connections() or snapshot.GUNICORN_WORKER_CONNECTIONS,
        thread_connections=database.thread_connections,
        cancel_query=database.cancel_running_query,
    )
    watch = leaks.LeakWatch(
        stats=database.pool_stats,
        busy=lambda: sum(pool.busy for pool in threads.pools_made()),
        recycle=this_worker.recycle,
        record=app_metrics.record_leaked_connections if app_metrics is not None else None,
    )
    this_worker.every(leaks.CHECK_SECONDS, watch.check)
    this_worker.when_finished(watch.at_exit)
    if app_metrics is not None:
        this_worker.every(
            PUBLISH_SECONDS,
            partial(_publish_metrics, app_metrics, requests_pool, django_application),
        )
    http = stack(django_application, snapshot, app_metrics)
    if websocket is None:
        unused = _websocket_settings_without_websockets(snapshot)
        if unused:
            raise env.ConfigError(*unused)
        return http
    return ByScopeType(
        http=http,
        websocket=websocket_stack(websocket, snapshot, app_metrics),
        metrics_port=snapshot.METRICS_PORT,
    )


def background_pool() -> ThreadPool:
    """The worker's pool without a limit; its threads give their database
    connections back after every job, as the requests pool's do."""
    return threads.background_pool(after_job=database.give_back_connections)


def _metrics(snapshot: env.Snapshot) -> Metrics | None:
    """The metrics, wired to what reports into them; None when METRICS_PORT is 0."""
    if not snapshot.METRICS_PORT:  # the one decision; the Gunicorn config binds the port on it
        return None
    multiprocess.prepare_directory(snapshot.PROMETHEUS_MULTIPROC_DIR)  # done already in Gunicorn
    app_metrics = metrics_of_this_server()
    this_worker.count_dropped_connections(app_metrics.connection_dropped)
    count_exceptions(app_metrics.exception_raised)
    return app_metrics


def _publish_metrics(
    app_metrics: Metrics,
    requests_pool: Any,
    django_application: DjangoApplication,
) -> None:
    """Once a second in each worker, and when it has finished serving: what it
    counted since (its requests, its waits for a thread), and its threads, its async
    requests and its pools now."""
    app_metrics.publish()
    pool = requests_pool()
    app_metrics.record_saturation(
        threads=pool.size,
        busy=pool.busy,
        waiting=pool.waiting,
        async_in_flight=django_application.async_in_flight,
    )
    app_metrics.record_database_pools(database.pool_stats())


def stack(
    django_application: ASGIApp,
    snapshot: env.Snapshot | None = None,
    app_metrics: Metrics | None = None,
) -> ASGIApp:
    """Layers 1-5 around a Django ASGI application (``make bench`` also puts them
    around Django's own ``ASGIHandler``, to compare like with like), with the checked
    snapshot and the metrics :func:`get_asgi_application` made (made here when not
    given). Django must be set up."""
    if snapshot is None:
        snapshot = runtime_settings.checked()
        app_metrics = _metrics(snapshot)
    try:
        checks = configured_checks(
            snapshot.HEALTH_CHECKS,
            timeout=snapshot.HEALTH_CHECK_TIMEOUT,
            cache_seconds=snapshot.HEALTH_CACHE_SECONDS,
            # A project's synchronous checks run in the worker's background pool.
            run_in_thread=lambda function: background_pool().run(function),
        )
    except CannotLoadChecks as error:  # at start-up, before any worker serves
        raise env.ConfigError(*error.lines) from None
    body_limit = BodyLimit(
        django_application,
        max_bytes=snapshot.REQUEST_MAX_BODY_SIZE,
        headers=security_headers.of_the_project(),  # Django's middleware adds them to the rest
    )
    probes = Probes(
        body_limit,
        checks,
        draining=this_worker.is_draining,
        ready_path=snapshot.HEALTH_PATH,
        live_path=snapshot.HEALTH_LIVE_PATH,
    )
    application: ASGIApp = RequestTimeout(probes, seconds=this_worker.request_timeout)
    application = RequestObserver(
        application,
        access_log=snapshot.GUNICORN_ACCESS_LOG,
        quiet_routes=() if snapshot.LOG_PROBES else probes.routes,
        metrics=app_metrics,
        tracing=tracing.request_tracing(  # None when off; set up in each worker
            snapshot, untraced_paths={path + end for path in probes.routes for end in ("", "/")}
        ),
    )
    if app_metrics is not None:
        application = MetricsEndpoint(
            application,
            port=snapshot.METRICS_PORT,
            registry=multiprocess.registry(),
            before_scrape=partial(_before_scrape, probes, app_metrics),
        )
    return application


async def _before_scrape(probes: Probes, app_metrics: Metrics) -> None:
    """Before each scrape: what this worker counted since its last second, and
    app_ready and app_health_check_ok as /health would answer now."""
    app_metrics.publish()
    readiness = await probes.readiness()
    app_metrics.record_readiness(readiness.ready, {c.name: c.ok for c in readiness.checks})


def websocket_stack(
    websocket_application: ASGIApp | str,
    snapshot: env.Snapshot,
    app_metrics: Metrics | None,
) -> ASGIApp:
    """Layers 1-3 of the WebSocket side around a project's WebSocket application (or
    its dotted path), and the worker told to serve WebSockets. Django must be set up."""
    from django.conf import settings as django_settings
    from django.utils.module_loading import import_string

    try:  # the websockets extra: Channels, and the protocol the worker speaks
        from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator

        import django_k8s_runtime.server.websocket_protocol  # noqa: F401 - needs `websockets`
    except ImportError as error:
        raise env.ConfigError(
            f"get_asgi_application(websocket=...) needs the package "
            f"{(error.name or '?').split('.')[0]!r}: install "
            "the runtime with its websockets extra, django-k8s-runtime[websockets]."
        ) from None

    channel_layer.guard_channel_layers()  # an outage closes the sockets in a group: 1012
    if isinstance(websocket_application, str):
        websocket_application = import_string(websocket_application)
    origins = snapshot.WEBSOCKET_ALLOWED_ORIGINS
    application: ASGIApp = (
        OriginValidator(websocket_application, list(origins))
        if origins
        else AllowedHostsOriginValidator(websocket_application)
    )
    allowed_hosts = django_settings.ALLOWED_HOSTS
    if django_settings.DEBUG and not allowed_hosts:  # as Django's HttpRequest.get_host()
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    application = HandshakeGuard(
        application,
        allowed_hosts=allowed_hosts,
        max_sockets=snapshot.WEBSOCKET_MAX_CONNECTIONS,
        handshake_timeout=this_worker.request_timeout,
    )
    socket_metrics = socket_observability.get() if app_metrics is not None else None
    if app_metrics is not None and socket_metrics is not None:
        app_metrics.publish_with(socket_metrics.publish)  # counted as they pass
    application = socket_observability.SocketObserver(
        application,
        access_log=snapshot.GUNICORN_ACCESS_LOG,
        metrics=socket_metrics,
    )
    websocket.serve_websockets(
        websocket.WebSocketSettings(
            max_message_bytes=snapshot.WEBSOCKET_MAX_MESSAGE_SIZE,
            ping_interval=snapshot.WEBSOCKET_PING_INTERVAL or None,
            ping_timeout=snapshot.WEBSOCKET_PING_TIMEOUT,
            send_timeout=snapshot.RESPONSE_SEND_TIMEOUT,
        )
    )
    return application


def _websocket_settings_without_websockets(snapshot: env.Snapshot) -> list[str]:
    """A WEBSOCKET_* variable set for an application without a WebSocket part would
    have no effect: an error, as any setting without effect (no silent fallbacks).
    Only the application knows, so it is checked here, not with the other rules."""
    return [
        f"{variable.name}={_shown(snapshot[variable.name])} has no effect because the "
        "application has no WebSocket part; pass it to get_asgi_application(websocket=...) "
        f"or remove {variable.name}."
        for variable in env.REGISTRY.values()
        if variable.section == env.WEBSOCKETS and snapshot.source(variable.name) != env.DEFAULT
    ]


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return repr(",".join(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


class ByScopeType:
    """WebSocket connections to the WebSocket side, everything else to the HTTP
    stack. The metrics port serves /metrics and nothing else: a handshake there is
    answered 404."""

    def __init__(self, *, http: ASGIApp, websocket: ASGIApp, metrics_port: int) -> None:
        self.http = http
        self.websocket = websocket
        self.metrics_port = metrics_port

    @markcoroutinefunction
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return self.http(scope, receive, send)  # no coroutine of ours on its way
        return self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if self.metrics_port and server and server[1] == self.metrics_port:
            await refuse(scope, send, 404, "not found: only /metrics here")
            return
        await self.websocket(scope, receive, send)
