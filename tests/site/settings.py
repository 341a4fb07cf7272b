"""Settings for the test suite: production settings plus test-only URLs.

Test processes (pytest and the real Gunicorn servers it starts) get a secret key
here when none is given, so the suite runs on a bare checkout.
"""

import os

import django

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-" + "k3y-" * 12)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.site.urls"
# The suite's own collected static files (tests/conftest.py collects them once), so
# test servers never see `staticfiles/` half-rewritten by a `make run` nearby; one
# directory per Django series, whose admin files differ (make test-series).
STATIC_ROOT = BASE_DIR / "build" / "test-static" / "django-{}.{}".format(*django.VERSION[:2])  # noqa: F405
# Outermost: records which thread runs the chain (tests/runtime/server/test_handler.py).
MIDDLEWARE = ["tests.site.middleware.record_threads", *MIDDLEWARE]  # noqa: F405

# Idle background threads end after 2 s here (60 s in production), so a test can
# watch what a thread's end does to the connections it held.
from django_k8s_runtime.server import threads as _threads  # noqa: E402

_threads.IDLE_SECONDS = 2.0
