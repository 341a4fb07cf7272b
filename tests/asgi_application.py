"""config/asgi.py with tests/routing.py's WebSocket routes: test servers that need
the test-only consumers serve ``tests.asgi_application:application``."""

import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

application = get_asgi_application(websocket="tests.routing.websocket_application")
