"""The example's WebSocket consumers through the production command (``gunicorn`` with
config.asgi), the real ``websockets`` client, and for the broadcast across pods a
real Redis server of the test's own."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed

from tests.project.service import service
from tests.support.redis import RedisServer
from tests.support.requirements import require_tool
from tests.support.sockets import ORIGIN, open_socket, ws_url

QUIET = {"HEALTH_CHECKS": ""}


@pytest.mark.slow
def test_echo_sends_back_what_it_receives() -> None:
    with service({"GUNICORN_WORKERS": "1", **QUIET}) as server:
        with open_socket(server.url("/ws/echo/")) as socket:
            socket.send("hello")
            assert socket.recv(timeout=10) == "hello"
            socket.send(b"\x00\xffbytes")
            assert socket.recv(timeout=10) == b"\x00\xffbytes"
        time.sleep(0.3)
        assert "echo socket closed with code 1000" in server.log()  # disconnect() ran


@pytest.mark.slow
def test_a_broadcast_reaches_every_member_through_the_in_memory_layer() -> None:
    with service({"GUNICORN_WORKERS": "1", **QUIET}) as server, ExitStack() as stack:
        members = [stack.enter_context(open_socket(server.url("/ws/broadcast/"))) for _ in range(3)]
        time.sleep(0.2)  # every member has joined the group
        members[0].send("to all")
        assert [m.recv(timeout=10) for m in members] == ["to all"] * 3
        members[1].send(b"bytes")  # text only: closed as unsupported data
        with pytest.raises(ConnectionClosed) as closed:
            members[1].recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1003


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["redis", "in-memory"])
def test_a_broadcast_crosses_pods_only_through_redis(layer: str) -> None:
    """Two pods (one worker each) with sockets on both: a message sent on one reaches
    the other's members when CHANNEL_LAYER_URL names a Redis; the in-memory layer,
    the control, stays inside its worker."""
    require_tool("redis-server")
    with RedisServer() as redis_server, ExitStack() as stack:
        environ = {"GUNICORN_WORKERS": "1", **QUIET}
        if layer == "redis":
            environ["CHANNEL_LAYER_URL"] = redis_server.url
        pods = [stack.enter_context(service(environ)) for _ in range(2)]
        here, there = (stack.enter_context(open_socket(pod.url("/ws/broadcast/"))) for pod in pods)
        time.sleep(0.5)  # both have joined the group
        here.send("across pods")
        assert here.recv(timeout=10) == "across pods"
        if layer == "redis":
            assert there.recv(timeout=10) == "across pods"
        else:
            with pytest.raises(TimeoutError):
                there.recv(timeout=2)


@pytest.mark.slow
def test_a_burst_of_sockets_joins_the_group_through_redis() -> None:
    """After a rollout a worker's clients all reconnect at once, each joining the
    group: more at once than redis-py's default pool of 100 connections."""
    import asyncio

    from websockets.asyncio.client import connect

    require_tool("redis-server")
    burst = 150

    async def join_at_once(url: str) -> list[str]:
        sockets = await asyncio.gather(
            *(connect(url, origin=ORIGIN, proxy=None, open_timeout=30) for _ in range(burst))
        )
        await asyncio.sleep(0.5)
        await sockets[0].send("all of you")
        received = await asyncio.gather(*(asyncio.wait_for(s.recv(), 10) for s in sockets))
        await asyncio.gather(*(s.close() for s in sockets))
        return received

    with RedisServer() as redis_server:
        environ = {"GUNICORN_WORKERS": "1", "CHANNEL_LAYER_URL": redis_server.url, **QUIET}
        with service(environ) as server:
            received = asyncio.run(join_at_once(ws_url(server.url("/ws/broadcast/"))))
            log = server.log()
    assert received == ["all of you"] * burst
    assert "Too many connections" not in log
