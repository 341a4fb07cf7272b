"""Django middleware that tells the request observer which route answered.

Metrics are labelled by route pattern (``/api/items``, ``/admin/<app_label>/``),
never by raw path, which would give every id its own time series. Django knows
the pattern once it has resolved the URL; this records it in the ASGI scope,
which the observer outside Django reads when the response is done.

It is recorded as soon as the URL is resolved (``process_view``, before the view
runs), so a request the timeout answers while its view is still running is
counted under its route too; static files, which WhiteNoise answers before any
URL is resolved, are recorded on the way out.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from django_k8s_runtime.asgi_types import ROUTE


class record_route:  # lower case: the name MIDDLEWARE lists, as it always had
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        response = self.get_response(request)
        _record(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)
        _record(request)
        return response

    def process_view(self, request: HttpRequest, *args: Any) -> None:
        _record(request)


def _record(request: HttpRequest) -> None:
    scope = getattr(request, "scope", None)
    if scope is None or ROUTE in scope:  # WSGI: no observer to tell; or recorded already
        return
    match = request.resolver_match
    if match is not None:
        scope[ROUTE] = "/" + match.route
    elif request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        scope[ROUTE] = "static"
