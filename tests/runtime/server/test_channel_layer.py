"""The channel layer as a dependency, through the production command (``gunicorn`` with
the test site's echo and broadcast consumers) and a Redis of the test's own that goes
away and comes back."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.redis import RedisServer
from tests.support.requirements import require_tool
from tests.support.server import Server
from tests.support.sockets import Closed, open_socket, wait_closed

pytestmark = pytest.mark.slow


def echoes(socket_, text: str) -> bool:
    socket_.send(text)
    return socket_.recv(timeout=10) == text


def ready(server: Server) -> int:
    return httpx.get(server.url("/health"), timeout=10).status_code


def until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_an_outage_closes_only_the_sockets_in_a_group_and_readiness_says_so() -> None:
    """Redis stops: each broadcast socket (in a group) is closed with 1012, the echo
    sockets (in none) go on echoing, a broadcast handshake is answered 503, /health
    503 (HEALTH_CHECKS=channel_layer), no traceback; Redis is back: all as before.
    Uvicorn dropped every socket of the worker, each with a traceback, readiness 200."""
    require_tool("redis-server")
    with RedisServer() as redis_server, ExitStack() as stack:
        environ = {
            "GUNICORN_WORKERS": "1",
            "CHANNEL_LAYER_URL": redis_server.url,
            "HEALTH_CHECKS": "channel_layer",
            "HEALTH_CACHE_SECONDS": "0",
        }
        server = stack.enter_context(Server(environ))
        grouped = [
            stack.enter_context(open_socket(server.url("/ws/_test/broadcast/"))) for _ in range(3)
        ]
        alone = [stack.enter_context(open_socket(server.url("/ws/_test/echo/"))) for _ in range(3)]
        time.sleep(0.5)  # every member has joined
        grouped[0].send("before")
        assert [s.recv(timeout=10) for s in grouped] == ["before"] * 3
        assert ready(server) == 200

        redis_server.stop()
        closed: list[Closed] = [wait_closed(s, timeout=15) for s in grouped]
        assert all(echoes(s, "during the outage") for s in alone)
        with pytest.raises(InvalidStatus) as refused:
            open_socket(server.url("/ws/_test/broadcast/"))
        assert refused.value.response.status_code == 503
        with open_socket(server.url("/ws/_test/echo/")) as new_alone:
            assert echoes(new_alone, "a new socket in no group")
        assert until(lambda: ready(server) == 503, 10)

        redis_server.start()  # the same port
        assert until(lambda: ready(server) == 200, 15)
        with open_socket(server.url("/ws/_test/broadcast/")) as again:
            time.sleep(0.3)
            again.send("after")
            assert again.recv(timeout=10) == "after"
        assert all(echoes(s, "after the outage") for s in alone)
        time.sleep(0.5)
        log = server.log()
    assert {c.code for c in closed} == {1012}
    assert "Traceback" not in log
    assert log.count("Channel layer 'default' unavailable") == 1
    assert "Channel layer 'default' is available again" in log
    assert log.count('"close_code": 1012') == 3  # each socket's access line
    assert "readiness check channel_layer:default fails" in log


def test_the_check_needs_a_layer() -> None:
    """HEALTH_CHECKS=channel_layer for a project without CHANNEL_LAYERS would check
    nothing: one line at start-up, as any setting without effect."""
    from tests.support.server import run

    result = run(
        [
            "gunicorn",
            "-c",
            "python:django_k8s_runtime.gunicorn",
            "tests.site.asgi_http_only:application",
        ],
        {
            "HEALTH_CHECKS": "channel_layer",
            "DJANGO_SETTINGS_MODULE": "tests.site.settings_no_layer",
        },
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in output
    assert output.endswith(
        "configuration error: HEALTH_CHECKS entry 'channel_layer' is not valid: the project's "
        "settings have no CHANNEL_LAYERS."
    )
