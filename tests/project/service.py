"""This repository's service as the tests under tests/project/ start it: its own
settings (config/settings.py) and ASGI entry (config/asgi.py), with what
tests/support/server.py gives every test server (a secret key, the host names).

The runtime's tests run on the runtime's own test site (tests/site/) instead, and
this pytest process's Django is that site's: the service's Python code runs only in
the processes these start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.support.server import Server

SETTINGS = {"DJANGO_SETTINGS_MODULE": "config.settings"}
APPLICATION = "config.asgi:application"
GUNICORN_COMMAND = ["gunicorn", "-c", "python:django_k8s_runtime.gunicorn", APPLICATION]
CHECK_ENV = ["python", "-m", "django_k8s_runtime", "check-env"]


def service(environ: Mapping[str, str] | None = None, **options: Any) -> Server:
    """A real Gunicorn serving the service, not yet started."""
    return Server({**SETTINGS, **(environ or {})}, application=APPLICATION, **options)
