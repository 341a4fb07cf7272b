"""The project as an ASGI server serves it without our runtime: Django's own handler.

The same layers around it as ours has (probes, request timeout, observer; see
``config/asgi.py``), so the ASGI peers serve the same endpoints and differ from
ours only in the server and in Django's request path: ``ASGIHandler``, as
``django.core.asgi.get_asgi_application()`` returns it, instead of our one-hop
``server.handler.DjangoApplication``.
"""

from django.core.asgi import get_asgi_application

from config.asgi import stack

application = stack(get_asgi_application())
