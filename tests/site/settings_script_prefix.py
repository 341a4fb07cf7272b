"""The test site's settings behind a script prefix that ends in "/", as a site served under
``/app/`` sets it (tests/runtime/server/test_handler_under_gunicorn.py)."""

from tests.site.settings import *  # noqa: F403

FORCE_SCRIPT_NAME = "/app/"
