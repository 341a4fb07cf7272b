"""Which view a request is for, known on the event loop before Django runs: whether
the view is ``async def`` (it then runs on the loop, not in one of the request
threads) and its route pattern (the metrics' label for a request answered before
its view runs).

A path is resolved against the root URLconf, a few microseconds, and the answer
is kept: it changes only with ``ROOT_URLCONF``, and when that setting changes (as
tests change it) the answers are forgotten, as Django forgets its own resolvers.
Should a middleware switch ``request.urlconf`` so that the view turns out
different, the request still runs correctly, in whichever thread it got.
"""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import get_script_prefix
from django.core.signals import setting_changed
from django.urls import Resolver404, URLResolver, get_resolver

from django_k8s_runtime.asgi_types import ROUTE, Scope


def is_for_async_view(scope: Scope) -> bool:
    return has_async_views() and _resolve(path_info(scope))[0]


def record_route(scope: Scope) -> None:
    """The route label, for a request answered (or counted) before its view runs;
    Django's ``record_route`` middleware leaves one set here as it is."""
    if ROUTE not in scope:
        route = _resolve(path_info(scope))[1]
        if route is not None:
            scope[ROUTE] = route


def path_info(scope: Scope) -> str:
    """The path Django resolves, as Django 6.1's ``ASGIRequest`` takes it: the prefix
    is stripped only at a "/" boundary. 5.2 and 6.0 strip any leading match (``x/``
    of ``/app/x/`` under ``/app/``); where the two rules differ, theirs leaves a path
    that resolves to nothing, so the newest rule is right on every series."""
    path: str = scope["path"]
    prefix: str = get_script_prefix(scope).rstrip("/")
    if prefix and (path.startswith(prefix + "/") or path == prefix):
        return path[len(prefix) :]
    return path


@functools.lru_cache(maxsize=1)
def has_async_views() -> bool:
    """Whether the root URLconf routes to any ``async def`` view: without one, no
    path needs resolving on the loop."""
    return _any_async_view(get_resolver())


@functools.lru_cache(maxsize=4096)
def _resolve(path: str) -> tuple[bool, str | None]:
    """Whether ``path`` is for an ``async def`` view, and its route pattern."""
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False, None
    return iscoroutinefunction(match.func), "/" + match.route


def _any_async_view(resolver: URLResolver) -> bool:
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if _any_async_view(pattern):
                return True
        elif iscoroutinefunction(pattern.callback):
            return True
    return False


def forget() -> None:
    """Forget every answer (the root URLconf changed)."""
    _resolve.cache_clear()
    has_async_views.cache_clear()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":
        forget()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_k8s_runtime.routes")
