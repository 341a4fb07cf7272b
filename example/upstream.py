"""A stand-in for the service the example's ``/api/upstream`` views call.

It answers every request with a small JSON document after ``delay_ms``
milliseconds (from its query string, 50 by default), as a payment provider, a
search service or another team's API would: the caller's time is spent waiting,
not computing. Serve it with ``uvicorn example.upstream:app --port 9100`` and set
``EXAMPLE_UPSTREAM_URL=http://127.0.0.1:9100/quote?delay_ms=50``. The tests and
``make bench`` start it the same way.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

DEFAULT_DELAY_MS = 50
MAX_DELAY_MS = 60_000


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # served with lifespan off; nothing else reaches it
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        delay_ms = min(int(query.get("delay_ms", [DEFAULT_DELAY_MS])[0]), MAX_DELAY_MS)
    except ValueError:
        delay_ms = DEFAULT_DELAY_MS
    await asyncio.sleep(delay_ms / 1000)
    body = json.dumps({"quote": "Simple is better than complex.", "delay_ms": delay_ms}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
