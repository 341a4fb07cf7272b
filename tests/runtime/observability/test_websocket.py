"""SocketObserver around tiny WebSocket applications: one access line per socket when
it ends, with how it ended; the request id; the sockets' metrics."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from django_k8s_runtime.observability import request_id
from django_k8s_runtime.observability.websocket import SocketMetrics, SocketObserver
from django_k8s_runtime.server.websocket_guard import refuse
from tests.support.asgi import SocketClient, echo_socket, run, websocket_scope

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


async def closes_with_4000(scope, receive, send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4000})


async def leaves_without_closing(scope, receive, send) -> None:
    await receive()
    await send({"type": "websocket.accept"})


async def refuses_by_closing(scope, receive, send) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def refuses_with_503(scope, receive, send) -> None:
    await receive()
    await refuse(scope, send, 503, "full")


async def fails(scope, receive, send) -> None:
    await receive()
    raise RuntimeError("a bug in connect()")


def observe(app, client_closes_with: int | None = 1000, headers=()):
    """Run ``app`` behind the observer for one socket; the registry and the client."""
    registry = CollectorRegistry()
    observer = SocketObserver(app, access_log=True, metrics=SocketMetrics(registry))

    async def scenario():
        client = SocketClient()
        scope = websocket_scope(headers=list(headers))
        scope["query_string"] = b"token=s3cr3t"
        task = asyncio.create_task(observer(scope, client.receive, client.send))
        await asyncio.sleep(0.01)
        client.message("one")
        client.message("two")
        if client_closes_with is not None:
            client.close(client_closes_with)
        with pytest.raises(RuntimeError) if app is fails else _nothing():
            await asyncio.wait_for(task, 1)
        return client

    return run(scenario()), registry


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def access_line(caplog) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == "django_k8s_runtime.access"]
    return record


@pytest.mark.parametrize(
    ("app", "closes_with", "logged"),
    [
        (echo_socket, 1000, 1000),  # the client closed
        (echo_socket, 1001, 1001),  # the client went away, or the server did (at shutdown)
        (closes_with_4000, 1000, 4000),  # the application closed first (its code: other)
        (leaves_without_closing, None, 1006),  # no close frame at all
    ],
)
def test_an_accepted_socket_is_logged_once_when_it_closes(app, closes_with, logged, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="django_k8s_runtime.access"):
        _, registry = observe(app, closes_with)
    record = access_line(caplog)
    assert record.close_code == logged
    assert record.path == "/ws/_test/echo/"
    assert record.method == "WEBSOCKET"
    assert "token" not in record.getMessage()
    assert f'"WEBSOCKET /ws/_test/echo/" {logged} ' in record.getMessage()
    label = "other" if logged == 4000 else str(logged)
    assert registry.get_sample_value("websocket_connections_closed_total", {"code": label})
    assert registry.get_sample_value("websocket_connections_open") == 0


def test_messages_are_counted_both_ways(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="django_k8s_runtime.access"):
        observe(echo_socket)
    record = access_line(caplog)
    assert (record.messages_in, record.messages_out) == (2, 2)
    assert record.getMessage().endswith(" 2 in 2 out")


def test_messages_are_counted_as_they_pass_and_published_with_the_requests() -> None:
    """Not when the socket closes: a socket open for hours counts while it is open (and
    a worker killed outright loses at most a second of counts, not its sockets')."""
    registry = CollectorRegistry()
    metrics = SocketMetrics(registry)
    observer = SocketObserver(echo_socket, access_log=False, metrics=metrics)

    def messages(direction: str) -> float | None:
        return registry.get_sample_value("websocket_messages_total", {"direction": direction})

    async def scenario():
        client = SocketClient()
        task = asyncio.create_task(observer(websocket_scope(), client.receive, client.send))
        await asyncio.sleep(0.01)
        for text in ("one", "two", "three"):
            client.message(text)
        await asyncio.sleep(0.01)
        before = messages("in")
        metrics.publish()
        published = (messages("in"), messages("out"))
        client.close()
        await asyncio.wait_for(task, 1)
        return before, published

    before, published = run(scenario())
    assert before is None  # counted in the worker until it publishes
    assert published == (3, 3)  # the socket is still open


def test_close_codes_a_client_chooses_are_one_label() -> None:
    """A client may close with any of 2,000 codes (3000-4999); each was a time series."""
    registry = CollectorRegistry()
    observer = SocketObserver(echo_socket, access_log=False, metrics=SocketMetrics(registry))

    async def scenario():
        for code in (1000, 1001, 3000, 3001, 4000, 4999, 1011):
            client = SocketClient()
            task = asyncio.create_task(observer(websocket_scope(), client.receive, client.send))
            await asyncio.sleep(0)
            client.close(code)
            await asyncio.wait_for(task, 1)

    run(scenario())
    codes = {
        sample.labels["code"]: sample.value
        for metric in registry.collect()
        if metric.name == "websocket_connections_closed"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert codes == {"1000": 1, "1001": 1, "1011": 1, "other": 4}


@pytest.mark.parametrize(
    ("app", "status"),
    [(refuses_by_closing, 403), (refuses_with_503, 503), (fails, 500)],
)
def test_a_refused_handshake_is_logged_with_its_status(app, status, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="django_k8s_runtime.access"):
        _, registry = observe(app, client_closes_with=None)
    record = access_line(caplog)
    assert record.status == status
    assert not hasattr(record, "close_code")
    assert registry.get_sample_value("websocket_handshakes_refused_total", {"status": str(status)})
    assert registry.get_sample_value("websocket_connections_open") == 0
    assert registry.get_sample_value("websocket_connections_closed_total", {"code": "1006"}) is None


def test_an_open_socket_is_counted_while_it_is_open() -> None:
    registry = CollectorRegistry()
    observer = SocketObserver(echo_socket, access_log=False, metrics=SocketMetrics(registry))

    async def scenario():
        clients = [SocketClient() for _ in range(3)]
        tasks = [
            asyncio.create_task(observer(websocket_scope(), c.receive, c.send)) for c in clients
        ]
        await asyncio.sleep(0.01)
        while_open = registry.get_sample_value("websocket_connections_open")
        clients[0].close()
        await asyncio.wait_for(tasks[0], 1)
        after_one = registry.get_sample_value("websocket_connections_open")
        for client in clients[1:]:
            client.close()
        await asyncio.wait_for(asyncio.gather(*tasks[1:]), 1)
        return while_open, after_one

    assert run(scenario()) == (3, 2)


def test_the_request_id_is_answered_and_bound_for_the_sockets_life(caplog) -> None:
    seen_ids: list[str | None] = []

    async def records_its_id(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            seen_ids.append(request_id.current_request_id())

    with caplog.at_level(logging.INFO, logger="django_k8s_runtime.access"):
        client, _ = observe(records_its_id, headers=[(b"x-request-id", b"socket-id-0001")])
    accept = client.sent[0]
    assert (b"x-request-id", b"socket-id-0001") in accept["headers"]
    assert seen_ids == ["socket-id-0001", "socket-id-0001"]


def test_http_passes_through_untouched() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    observer = SocketObserver(app, access_log=True, metrics=None)
    run(observer({"type": "http"}, None, None))
    assert seen == ["http"]
