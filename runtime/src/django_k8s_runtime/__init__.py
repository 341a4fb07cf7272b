"""Run a Django project in production on Kubernetes: Gunicorn with Uvicorn workers,
configured from the environment, with probes, drain, limits, logs and metrics.

The public surface (everything else is private and may change):

* ``django_k8s_runtime.gunicorn``: the Gunicorn config module
  (``gunicorn -c python:django_k8s_runtime.gunicorn mysite.asgi:application``);
* ``django_k8s_runtime.asgi.get_asgi_application``: a project's ASGI application
  inside the runtime's layers;
* ``django_k8s_runtime.settings``: settings helpers (databases, caches,
  middleware, logging);
* ``django_k8s_runtime.management.execute_from_command_line``: for ``manage.py``;
* ``django_k8s_runtime.env`` and ``django_k8s_runtime.validation``: to declare and
  check a project's own variables the same way;
* ``python -m django_k8s_runtime check-env``: check and show the configuration.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["PUBLIC_MODULES", "__version__"]

try:
    __version__ = version("django-k8s-runtime")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree
    __version__ = "0+unknown"

PUBLIC_MODULES = (
    "django_k8s_runtime",
    "django_k8s_runtime.asgi",
    "django_k8s_runtime.env",
    "django_k8s_runtime.gunicorn",
    "django_k8s_runtime.management",
    "django_k8s_runtime.settings",
    "django_k8s_runtime.validation",
)
