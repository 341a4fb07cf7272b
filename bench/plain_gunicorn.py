"""An empty Gunicorn config for the Gunicorn peers (``-c python:bench.plain_gunicorn``).

Without ``-c``, Gunicorn loads ``./gunicorn.conf.py``, which is this project's
config: the peers would silently run with our settings and hooks. They get plain
Gunicorn and the equivalent settings on their command line instead.
"""

accesslog = None  # the same for everyone: no access log (see docs/benchmarks.md)
