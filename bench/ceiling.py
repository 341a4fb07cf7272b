"""The ceiling: the smallest ASGI application, served by Uvicorn (uvloop, httptools).

It answers every request with the body ``/health/live`` sends, so comparing the
two shows what our whole stack (Gunicorn's worker, the request timeout, the
observer, the probes) costs on top of the bare server.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status": "ok"}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # served with lifespan off; nothing else reaches it
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
