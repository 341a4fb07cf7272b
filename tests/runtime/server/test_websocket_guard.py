"""HandshakeGuard around tiny WebSocket applications: the host check, the cap on open
sockets, and the handshake's deadline (not the open socket's)."""

from __future__ import annotations

import asyncio
import json

import pytest

from django_k8s_runtime.server.websocket_guard import HandshakeGuard
from tests.support.asgi import SocketClient, echo_socket, run, websocket_scope

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


def guard(app=echo_socket, *, max_sockets: int = 10, timeout: float | None = None):
    return HandshakeGuard(
        app,
        allowed_hosts=["testserver", ".example.com"],
        max_sockets=max_sockets,
        handshake_timeout=lambda: timeout,
    )


async def open_socket(app, client: SocketClient, **scope) -> asyncio.Task[None]:
    task = asyncio.create_task(app(websocket_scope(**scope), client.receive, client.send))
    await asyncio.sleep(0.01)
    return task


@pytest.mark.parametrize(
    ("hosts", "allowed"),
    [
        ([b"testserver"], True),
        ([b"testserver:8000"], True),
        ([b"chat.example.com"], True),
        ([b"evil.test"], False),
        ([b"testserver", b"evil.test"], False),  # which one would count?
        ([b"evil.test", b"testserver"], False),
        ([], False),
    ],
)
def test_the_host_must_be_an_allowed_one(hosts, allowed, caplog) -> None:
    async def scenario():
        client = SocketClient()
        scope = websocket_scope()
        scope["headers"] = [(b"host", host) for host in hosts]
        task = asyncio.create_task(guard()(scope, client.receive, client.send))
        await asyncio.sleep(0.01)
        client.close()
        await asyncio.wait_for(task, 1)
        return client

    client = run(scenario())
    if allowed:
        assert client.kinds[0] == "websocket.accept"
    else:
        assert client.status == 400
        assert json.loads(client.sent[1]["body"]) == {"error": "host not allowed"}
        assert "not in ALLOWED_HOSTS" in caplog.text


def test_the_cap_holds_and_a_closed_socket_makes_room() -> None:
    async def scenario():
        app = guard(max_sockets=2)
        first, second, third, fourth = (SocketClient() for _ in range(4))
        open_tasks = [await open_socket(app, first), await open_socket(app, second)]
        await open_socket(app, third)
        refused = third.status
        first.close()
        await asyncio.wait_for(open_tasks[0], 1)
        later = await open_socket(app, fourth)
        accepted_later = fourth.kinds[:1]
        second.close()
        fourth.close()
        await asyncio.wait_for(asyncio.gather(open_tasks[1], later), 1)
        return refused, accepted_later, app.open

    refused, accepted_later, still_open = run(scenario())
    assert refused == 503
    assert accepted_later == ["websocket.accept"]
    assert still_open == 0


def test_a_handshake_over_the_timeout_is_answered_504_and_the_application_cancelled(
    caplog,
) -> None:
    cancelled = asyncio.Event()

    async def slow_to_decide(scope, receive, send) -> None:
        await receive()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            await send({"type": "websocket.close"})  # too late: dropped
            raise
        await send({"type": "websocket.accept"})

    async def scenario():
        client = SocketClient()
        app = guard(slow_to_decide, timeout=0.05)
        await asyncio.wait_for(app(websocket_scope(), client.receive, client.send), 2)
        return client, app.open

    client, still_open = run(scenario())
    assert cancelled.is_set()
    assert client.status == 504
    assert client.kinds == ["websocket.http.response.start", "websocket.http.response.body"]
    assert still_open == 0
    assert "handshake exceeded the 0.05s timeout" in caplog.text


def test_an_open_socket_may_idle_past_the_timeout() -> None:
    async def scenario():
        client = SocketClient()
        task = await open_socket(guard(timeout=0.05), client)
        await asyncio.sleep(0.2)  # four timeouts, idle
        client.message("still here")
        await asyncio.sleep(0.01)
        client.close()
        await asyncio.wait_for(task, 1)
        return client

    client = run(scenario())
    assert client.kinds == ["websocket.accept", "websocket.send"]
    assert client.sent[1]["text"] == "still here"


def test_the_servers_own_cancellation_goes_on() -> None:
    """A shutdown that cancels a handshake's task is not the guard's to swallow."""

    async def undecided(scope, receive, send) -> None:
        await asyncio.sleep(30)

    async def scenario():
        client = SocketClient()
        task = await open_socket(guard(undecided, timeout=5), client)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())


def test_without_the_http_response_extension_a_refusal_closes_the_handshake() -> None:
    async def scenario():
        client = SocketClient()
        scope = websocket_scope(http_response=False, headers=[])
        scope["headers"] = [(b"host", b"evil.test")]
        await guard()(scope, client.receive, client.send)
        return client

    assert run(scenario()).kinds == ["websocket.close"]  # the server answers 403
