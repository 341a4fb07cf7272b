"""The test site as an application without a WebSocket part (README's plain form),
for tests of what that refuses."""

import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.site.settings")

application = get_asgi_application()
