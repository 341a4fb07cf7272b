"""The security headers a project's responses carry, for a response the runtime
gives before Django (the 413 of a body over ``REQUEST_MAX_BODY_SIZE``).

Django's own middleware adds them in ``process_response``: ``SecurityMiddleware``
(``X-Content-Type-Options``, ``Referrer-Policy``, ``Cross-Origin-Opener-Policy``,
and ``Strict-Transport-Security`` on https), ``XFrameOptionsMiddleware``
(``X-Frame-Options``) and, from Django 6.0, ``ContentSecurityPolicyMiddleware``.
A response answered before Django never passes through them. Here the same
classes, those of them the project's ``MIDDLEWARE`` lists, configured by its
settings, add their headers to an empty response for the request at hand: the
project's values, not a copy of their rules that could drift.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

from django_k8s_runtime.asgi_types import Headers, Scope

logger = logging.getLogger(__name__)

# Django's middleware that only add headers to a response.
HEADER_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
)


def of_the_project() -> Callable[[Scope], Headers]:
    """The headers the project's Django middleware would add to a response to the
    request of ``scope``. Django must be set up."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    chain = [
        import_string(path)(_no_response)
        for path in settings.MIDDLEWARE
        if path in HEADER_MIDDLEWARE
    ]

    def headers(scope: Scope) -> Headers:
        if not chain:
            return []
        from django.core.handlers.asgi import ASGIRequest
        from django.http import HttpResponse

        try:
            request = ASGIRequest(scope, io.BytesIO())
            response = HttpResponse()
            for middleware in reversed(chain):  # in the order Django runs them
                response = middleware.process_response(request, response)
        except Exception:  # a header is not worth the answer itself
            logger.exception("the security headers could not be made for %s", scope.get("path"))
            return []
        return [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.items()
            if name.lower() != "content-type"
        ]

    return headers


def _no_response(request: Any) -> None:
    """The next layer a middleware is made with: never called, only its
    ``process_response`` is."""
    raise AssertionError("only process_response is used")  # pragma: no cover
