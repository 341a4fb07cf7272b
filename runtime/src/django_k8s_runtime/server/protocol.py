"""Uvicorn's HTTP protocol, fitted for a server in a pod: the worker's protocol class.

Uvicorn's ``HttpToolsProtocol`` with three layers, each a module with one job:

1. :mod:`.http_connection`: the connection's life. Requests on their way at
   shutdown are kept, a client gone is recorded in the scope for every request of
   the connection, a malformed body is the client's 400, idle keep-alive
   connections make room past ``worker_connections``.
2. :mod:`.http_head`: Gunicorn's request-head limits (414, 431), which Uvicorn
   ignores, with the head's bytes counted as they arrive, and the head's deadline
   (408).
3. :mod:`.http_pace`: a client that does not read is reset, pipelined requests and
   a trickling body are bounded: the connection holds the worker only as long as
   its client does its part.

Every bound, and what happens at it, is in the docs' table of per-connection bounds.
"""

from __future__ import annotations

from django_k8s_runtime.server.http_pace import PacedProtocol

__all__ = ["HttpProtocol"]


class HttpProtocol(PacedProtocol):
    """What the worker gives Uvicorn as its HTTP protocol (with ``limits`` and
    ``bounds``: :class:`.limits.HeadLimits`, :class:`.limits.ConnectionLimits`)."""
