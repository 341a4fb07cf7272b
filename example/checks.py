"""This project's own readiness checks, for ``HEALTH_CHECKS``.

``HEALTH_CHECKS=database,example.checks:upstream`` makes ``/health`` fail while the
service the ``/api/upstream`` views call is down, so the pod takes no traffic it
could only answer 503. The runtime bounds it by ``HEALTH_CHECK_TIMEOUT``, caches
it for ``HEALTH_CACHE_SECONDS`` and logs its changes of state; a check only says
whether its dependency answers.
"""

from __future__ import annotations

from example import services


async def upstream() -> None:
    """Ready when the upstream service answers (raises UpstreamUnavailable if not,
    or if EXAMPLE_UPSTREAM_URL is not set)."""
    await services.upstream_quote()
