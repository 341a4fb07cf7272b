"""Admission: a quick 503 the load balancer can retry elsewhere, instead of a 504
after a long wait.

A worker holds at most ``GUNICORN_WORKER_CONNECTIONS`` requests; a synchronous
request that finds every thread busy is admitted only if the queue ahead of it
(at the pool's recent job time) lets it start and finish within ``QUEUE_SHARE``
of the time left to its deadline, and withdrawn with a 503 if no thread came by
then. Half is kept back for the request itself and for the estimate being wrong:
an admitted request should finish within its timeout, not earn a 504.
"""

from __future__ import annotations

import asyncio
import logging
import time

from django_k8s_runtime.asgi_types import Deadline, Scope, Send, send_json
from django_k8s_runtime.server.threads import ThreadPool

logger = logging.getLogger(__name__)

QUEUE_SHARE = 0.5  # of the time left to its deadline, what a request may spend waiting
REFUSED = -1.0
RETRY_AFTER_SECONDS = 1
BUSY = b'{"error": "server busy, retry"}'


def admission(threads: ThreadPool, deadline: Deadline | None) -> float | None:
    """For a synchronous request that finds every thread busy: REFUSED when it would
    not get a thread and finish within ``QUEUE_SHARE`` of the time left to its
    deadline (judged from the queue and how long requests take lately); otherwise
    the loop time by which it must have a thread, or None without a deadline."""
    if deadline is None:
        return None
    now = asyncio.get_running_loop().time()
    budget = (deadline.at - now) * QUEUE_SHARE
    assert threads.size is not None
    expected_wait = (threads.waiting + 1) * threads.job_seconds / threads.size
    if expected_wait + threads.job_seconds > budget:
        return REFUSED
    return now + budget


async def refuse(scope: Scope, send: Send, why: str) -> None:
    """503 with ``Retry-After``, at once: this process is full. A request with a body
    refused before it was read closes its connection."""
    _refusals.note(why, scope)
    headers = [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS), (b"cache-control", b"no-store")]
    if _has_body(scope):
        headers.append((b"connection", b"close"))
    await send_json(send, 503, BUSY, headers=headers)


class _Refusals:
    """One warning line per ``INTERVAL`` at most: under overload every refusal is
    in the access log already, and a line each would only add to the load."""

    INTERVAL = 10.0

    def __init__(self) -> None:
        self._since_last_line = 0
        self._last_line_at = -self.INTERVAL

    def note(self, why: str, scope: Scope) -> None:
        self._since_last_line += 1
        now = time.monotonic()
        if now - self._last_line_at < self.INTERVAL:
            return
        logger.warning(
            "requests refused with 503, the worker is full: %d since the last such line; "
            "this one because %s: %s %s",
            self._since_last_line,
            why,
            scope.get("method", ""),
            scope.get("path", ""),
        )
        self._since_last_line, self._last_line_at = 0, now


_refusals = _Refusals()


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False
