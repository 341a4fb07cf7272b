"""The project as an ASGI server serves it without our runtime's request path.

The same layers around it as ours has (probes, request timeout, observer, body
limit: ``contenders.STOCK_LAYERS``, the runtime's own composition of them), so the
ASGI peers serve the same endpoints and differ from ours only in the server and in
Django's request path: Django's own ``ASGIHandler``, as
``django.core.asgi.get_asgi_application()`` returns it, instead of the runtime's
one-hop request path.

No project needs those layers without the runtime's handler; the benchmark does, to
compare like with like.
"""

import os
import pkgutil

from django.core.asgi import get_asgi_application

from bench.contenders import STOCK_LAYERS

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = pkgutil.resolve_name(STOCK_LAYERS)(get_asgi_application())
