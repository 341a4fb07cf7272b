"""Django's error page with DEBUG on (django_k8s_runtime/reporting.py): no URL's
password, from a real server."""

from __future__ import annotations

import pytest

from tests.support.server import Server

PASSWORD = "s3cret-never-shown"


@pytest.mark.slow
def test_the_debug_page_stars_the_passwords_of_url_settings() -> None:
    """Django hides a setting by its name only: the cache's URL and the upstream's,
    passwords and all, were on the 500 page."""
    environ = {
        "DJANGO_DEBUG": "true",
        "GUNICORN_WORKERS": "1",
        "HEALTH_CHECKS": "",
        "CACHE_URL": f"redis://:{PASSWORD}@127.0.0.1:6399/0",
        "UPSTREAM_URL": f"http://upstream:{PASSWORD}@127.0.0.1:9/?token={PASSWORD}",
    }
    with Server(environ) as server:
        page = server.get("/_test/raise")
    assert page.status_code == 500
    assert "RuntimeError" in page.text  # Django's technical 500 page, settings and all
    assert "UPSTREAM_URL" in page.text
    assert PASSWORD not in page.text
    assert "redis://:***@127.0.0.1:6399/0" in page.text
    assert "http://upstream:***@127.0.0.1:9/?token=***" in page.text
