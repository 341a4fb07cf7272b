"""config/asgi.py with tests/site/routing.py's WebSocket routes: test servers that need
the test-only consumers serve ``tests.site.asgi:application``."""

import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.site.settings")

application = get_asgi_application(websocket="tests.site.routing.websocket_application")
