"""The ASGI entry point: this project inside the runtime's layers, as any project's.

The layers, outermost first, are described in django_k8s_runtime/asgi.py.
"""

import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()
