"""WebSocket routes (Django Channels), as config/urls.py is the HTTP ones.

``config/asgi.py`` hands ``websocket_application`` to the runtime, which puts the
host and origin checks, the limits, the access log and the metrics around it.
"""

from channels.routing import URLRouter

from example.routing import websocket_urlpatterns

websocket_application = URLRouter(websocket_urlpatterns)
