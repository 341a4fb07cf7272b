"""The project as an ASGI server serves it without our runtime's request path.

The same layers around it as ours has (probes, request timeout, observer, body
limit: ``django_k8s_runtime.asgi.stack``), so the ASGI peers serve the same
endpoints and differ from ours only in the server and in Django's request path:
Django's own ``ASGIHandler``, as ``django.core.asgi.get_asgi_application()``
returns it, instead of the runtime's one-hop ``DjangoApplication``.

It uses the runtime's ``stack`` on its own, which no project needs to: the
benchmark compares like with like.
"""

import os

from django.core.asgi import get_asgi_application

from django_k8s_runtime.asgi import stack

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = stack(get_asgi_application())
