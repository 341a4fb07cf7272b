"""The ASGI entry point: this project inside the runtime's layers, as any project's.

HTTP goes to Django, WebSockets to the Channels routes in config/routing.py
(imported once Django is set up). The layers, outermost first, are described in
django_k8s_runtime/asgi.py.
"""

import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application(websocket="config.routing.websocket_application")
