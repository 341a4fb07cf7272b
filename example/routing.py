"""The example's WebSocket routes, as example/urls.py is its HTTP routes."""

from django.urls import path

from example import consumers

websocket_urlpatterns = [
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
    path("ws/broadcast/", consumers.BroadcastConsumer.as_asgi()),
]
