"""A tiny ASGI application served by Uvicorn with one HTTP protocol class or the
other, for comparing the two byte for byte (tests/runtime/server/test_http_edge_cases.py):

    python -m tests.support.protocol_server uvicorn|runtime PORT

The application answers every request with what it received: the method, the
target, the headers and the body, so a difference in how a request was framed or
read shows in the answer.
"""

from __future__ import annotations

import json
import sys
from typing import Any


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "version": scope["http_version"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1"),
        },
        sort_keys=True,
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def main(protocol: str, port: int) -> None:
    import uvicorn

    if protocol == "runtime":
        from django_k8s_runtime.server.protocol import HttpProtocol

        http: Any = HttpProtocol
    else:
        http = "httptools"
    uvicorn.run(
        echo,
        host="127.0.0.1",
        port=port,
        http=http,
        ws="none",
        lifespan="off",
        loop="uvloop",
        access_log=False,
        log_level="error",
        date_header=False,
        server_header=False,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
