"""The server: Gunicorn as process manager, Uvicorn workers for ASGI, and the
layers of the request path that belong to serving (limits, timeout, threads, the
Django handler, WebSockets).

Nothing here imports the rest of the runtime (the composition root, ``asgi.py``,
hands each piece its values) or the project; ``handler.py`` and
``websocket_guard.py`` use Django itself, the rest does not.
"""
