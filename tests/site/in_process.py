"""The test site's settings for the pytest process itself (pyproject.toml's
``DJANGO_SETTINGS_MODULE``): the secret key and host names a test server gets from
tests/support/server.py are set here, as pytest-django imports the settings before
any conftest runs; Django's test client asks for ``testserver``."""

import os

from tests.support.server import TEST_SECRET_KEY

os.environ.setdefault("DJANGO_SECRET_KEY", TEST_SECRET_KEY)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")

from tests.site.settings import *  # noqa: F403
