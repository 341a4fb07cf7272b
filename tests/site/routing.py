"""The test site's WebSocket routes, as tests/site/urls.py is its HTTP ones. Served by
tests/site/asgi.py."""

from channels.routing import URLRouter
from django.urls import path

from tests.site import consumers

websocket_application = URLRouter(
    [
        path("ws/_test/echo/", consumers.Echo.as_asgi()),
        path("ws/_test/broadcast/", consumers.Broadcast.as_asgi()),
        path("ws/_test/slow-to-accept/", consumers.SlowToAccept.as_asgi()),
        path("ws/_test/pid/", consumers.WorkerPid.as_asgi()),
        path("ws/_test/slow-reader/", consumers.SlowReader.as_asgi()),
    ]
)
