"""A test-only middleware, outermost: which thread runs the middleware chain."""

from __future__ import annotations

import threading
from typing import Any

from django.http import HttpRequest, HttpResponseBase


def record_threads(get_response: Any) -> Any:
    def middleware(request: HttpRequest) -> HttpResponseBase:
        entered = threading.current_thread().name
        response = get_response(request)
        response["X-Middleware-Threads"] = f"{entered},{threading.current_thread().name}"
        return response

    return middleware
