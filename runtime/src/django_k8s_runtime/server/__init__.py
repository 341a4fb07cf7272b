"""The production runtime: Gunicorn as process manager, Uvicorn workers for ASGI.

Nothing here imports Django or this project's settings; lift the package into
another service and point ``worker_class`` at :class:`server.worker.UvicornWorker`.
"""
