"""The example's consumers as a Channels project serves them without the runtime.

Channels' documented ``asgi.py``: a ``ProtocolTypeRouter`` with Django's own ASGI
handler for HTTP and ``AllowedHostsOriginValidator(URLRouter(...))`` for
WebSockets, the same routes (example/routing.py) and the same settings (the
channel layer from CHANNEL_LAYER_URL). Daphne and stock Uvicorn serve this in the
WebSocket benchmark (bench/websockets.py); ours serves config.asgi.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - after Django's setup
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from example.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
