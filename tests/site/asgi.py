"""The test site's ASGI entry, as README's Channels form makes a project's: HTTP to
Django, WebSockets to tests/site/routing.py. What test servers serve by default
(``tests.site.asgi:application``)."""

import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.site.settings")

application = get_asgi_application(websocket="tests.site.routing.websocket_application")
