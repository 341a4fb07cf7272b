"""The example's WebSocket routes plus consumers only tests need, as tests/site/urls.py is
for HTTP. Served by tests/site/asgi.py."""

from channels.routing import URLRouter
from django.urls import path

from example.routing import websocket_urlpatterns
from tests.site import consumers

websocket_application = URLRouter(
    [
        *websocket_urlpatterns,
        path("ws/_test/slow-to-accept/", consumers.SlowToAccept.as_asgi()),
        path("ws/_test/pid/", consumers.WorkerPid.as_asgi()),
        path("ws/_test/slow-reader/", consumers.SlowReader.as_asgi()),
    ]
)
