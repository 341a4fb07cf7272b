"""Django middleware that tells the request observer which route answered.

Metrics are labelled by route pattern (``/api/items``, ``/admin/<app_label>/``),
never by raw path, which would give every id its own time series. Django knows
the pattern once it has resolved the URL; this records it in the ASGI scope,
which the observer outside Django reads when the response is done.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def record_route(get_response: Any) -> Any:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            response = await get_response(request)
            _record(request)
            return response

        markcoroutinefunction(middleware)
    else:

        def middleware(request: HttpRequest) -> HttpResponseBase:  # type: ignore[misc]
            response = get_response(request)
            _record(request)
            return response

    return middleware


record_route.sync_capable = True  # type: ignore[attr-defined]
record_route.async_capable = True  # type: ignore[attr-defined]


def _record(request: HttpRequest) -> None:
    scope = getattr(request, "scope", None)
    if scope is None:  # WSGI: there is no observer to tell
        return
    match = request.resolver_match
    if match is not None:
        scope["route"] = "/" + match.route
    elif request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        scope["route"] = "static"
