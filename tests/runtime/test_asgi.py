"""get_asgi_application(websocket=...) as a project calls it: HTTP keeps its layers,
a WebSocket goes through the host and origin checks to the project's application,
and the worker is told to serve WebSockets."""

from __future__ import annotations

import asyncio

import pytest

from django_k8s_runtime.asgi import ByScopeType, get_asgi_application
from django_k8s_runtime.server import websocket
from tests.support.asgi import SocketClient, client, echo_socket, run, websocket_scope

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


def handshake(app, *headers: tuple[bytes, bytes], port: int = 8000) -> SocketClient:
    async def scenario():
        socket = SocketClient()
        task = asyncio.create_task(
            app(websocket_scope(headers=list(headers), port=port), socket.receive, socket.send)
        )
        await asyncio.sleep(0.05)
        socket.close()
        await asyncio.wait_for(task, 2)
        return socket

    return run(scenario())


@pytest.fixture(scope="module")
def application():
    yield get_asgi_application(websocket="tests.site.routing.websocket_application")
    # Channels' consumers ran sync_to_async (closing stale database connections)
    # in asgiref's one thread; leave no thread behind for tests that fork.
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.shutdown(wait=True)
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


def test_http_still_goes_through_the_runtime(application) -> None:
    async def scenario():
        async with client(application) as http:
            return await http.get("/health/live")

    response = run(scenario())
    assert response.status_code == 200
    assert "x-request-id" in response.headers  # the observer, outermost


def test_a_socket_from_an_allowed_origin_reaches_the_consumer(application) -> None:
    socket = handshake(application, (b"origin", b"https://testserver"))
    assert socket.kinds[0] == "websocket.accept"


@pytest.mark.parametrize(
    "origin",
    [b"https://evil.test", None],
    ids=["another-site", "no-origin"],
)
def test_a_socket_from_another_origin_is_refused(application, origin) -> None:
    headers = [(b"origin", origin)] if origin else []
    socket = handshake(application, *headers)
    assert socket.kinds == ["websocket.close"]  # Channels' refusal: the server answers 403


def test_the_host_is_checked_before_the_origin(application) -> None:
    scope_headers = [(b"origin", b"https://testserver")]

    async def scenario():
        socket = SocketClient()
        scope = websocket_scope(headers=scope_headers)
        scope["headers"] = [(b"host", b"evil.test"), *scope_headers]
        await application(scope, socket.receive, socket.send)
        return socket

    assert run(scenario()).status == 400


def test_the_worker_is_told_to_serve_websockets(application) -> None:
    from uvicorn import Config

    settings = websocket.requested()
    assert settings is not None
    assert settings.max_message_bytes == 1048576  # WEBSOCKET_MAX_MESSAGE_SIZE's default
    config = Config(application)
    websocket.configure(config)
    assert config.ws.func.__name__ == "GoingAwayWebSocketProtocol"
    assert config.ws.keywords == {"send_timeout": 10.0}  # RESPONSE_SEND_TIMEOUT's default
    assert (config.ws_max_size, config.ws_ping_interval, config.ws_ping_timeout) == (
        1048576,
        20.0,
        20.0,
    )


def test_a_handshake_on_the_metrics_port_is_answered_404() -> None:
    app = ByScopeType(http=None, websocket=echo_socket, metrics_port=9000)
    assert handshake(app, port=9000).status == 404
    assert handshake(app, port=8000).kinds[0] == "websocket.accept"


def test_without_a_websocket_part_the_worker_serves_none(monkeypatch) -> None:
    """An upgrade request is then plain HTTP to the application, as before."""
    from uvicorn import Config

    monkeypatch.setattr(websocket, "_requested", None)
    config = Config(echo_socket)
    websocket.configure(config)
    assert config.ws == "none"


@pytest.mark.parametrize("missing", ["channels.security.websocket", "websockets"])
def test_without_the_extra_the_error_says_what_to_install(monkeypatch, missing) -> None:
    import sys

    from django_k8s_runtime.asgi import websocket_stack
    from django_k8s_runtime.env import ConfigError
    from django_k8s_runtime.settings import checked

    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    for imported in (
        "django_k8s_runtime.server.websocket_protocol",
        "uvicorn.protocols.websockets.websockets_sansio_impl",
    ):
        monkeypatch.delitem(sys.modules, imported, raising=False)
    with pytest.raises(ConfigError) as error:
        websocket_stack(echo_socket, checked(), None)
    assert "django-k8s-runtime[websockets]" in error.value.message
    assert repr(missing.split(".")[0]) in error.value.message


def test_websocket_settings_without_a_websocket_part_are_refused() -> None:
    """A setting without effect is an error (CONSTITUTION.md, rule 3)."""
    from django_k8s_runtime import env
    from django_k8s_runtime.asgi import _websocket_settings_without_websockets

    assert _websocket_settings_without_websockets(env.load({})) == []
    lines = _websocket_settings_without_websockets(
        env.load({"WEBSOCKET_MAX_CONNECTIONS": "5", "WEBSOCKET_ALLOWED_ORIGINS": "*"})
    )
    assert lines == [
        "WEBSOCKET_MAX_CONNECTIONS=5 has no effect because the application has no WebSocket "
        "part; pass it to get_asgi_application(websocket=...) or remove "
        "WEBSOCKET_MAX_CONNECTIONS.",
        "WEBSOCKET_ALLOWED_ORIGINS='*' has no effect because the application has no WebSocket "
        "part; pass it to get_asgi_application(websocket=...) or remove "
        "WEBSOCKET_ALLOWED_ORIGINS.",
    ]
