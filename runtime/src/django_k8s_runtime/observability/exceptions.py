"""Exceptions a view or middleware raised, counted by class and route.

Django answers an uncaught exception with a 500 and sends ``got_request_exception``
while handling it; the receiver here hands the exception's class name and the
request's route to ``count``. A 500 in the metrics says that something failed; this
says what, as django-prometheus' ``django_http_exceptions_total_by_type`` does. It
costs nothing on a request that raises nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django_k8s_runtime.asgi_types import ROUTE

DISPATCH_UID = "django_k8s_runtime.observability.exceptions"


def count_exceptions(count: Callable[[str, str | None], None]) -> None:
    """Have ``count(class name, route)`` called for each exception Django answers 500 for."""
    from django.core.signals import got_request_exception

    def raised(sender: Any, request: Any = None, **kwargs: Any) -> None:
        error = sys.exc_info()[1]  # the signal is sent while the exception is handled
        if error is None:
            return
        count(type(error).__name__, _route(request))

    got_request_exception.connect(raised, weak=False, dispatch_uid=DISPATCH_UID)


def _route(request: Any) -> str | None:
    scope = getattr(request, "scope", None)
    if scope and scope.get(ROUTE):
        return str(scope[ROUTE])
    match = getattr(request, "resolver_match", None)
    return "/" + match.route if match is not None else None
