"""The security headers of the project's responses, for a response the runtime gives
before Django: made by Django's own middleware, as the project's settings configure
them (the test site's, production-like)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from django_k8s_runtime.server.security_headers import of_the_project
from tests.support.asgi import http_scope

pytestmark = pytest.mark.in_process


def headers(scheme: str = "http") -> dict[bytes, bytes]:
    return dict(of_the_project()({**http_scope("/upload", method="POST"), "scheme": scheme}))


def test_the_projects_security_middleware_gives_its_headers() -> None:
    assert headers() == {
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": settings.SECURE_REFERRER_POLICY.encode(),
        b"cross-origin-opener-policy": settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode(),
        b"x-frame-options": settings.X_FRAME_OPTIONS.encode(),
    }


def test_hsts_only_over_https_as_django_sends_it() -> None:
    assert settings.SECURE_HSTS_SECONDS  # the test site's production-like settings
    sent = headers("https")[b"strict-transport-security"]
    assert sent.startswith(b"max-age=%d" % settings.SECURE_HSTS_SECONDS)
    assert b"strict-transport-security" not in headers("http")


@override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"])
def test_a_project_without_those_middleware_gets_none() -> None:
    assert headers() == {}


@override_settings(X_FRAME_OPTIONS="SAMEORIGIN", SECURE_REFERRER_POLICY="no-referrer")
def test_the_values_are_the_projects() -> None:
    found = headers()
    assert found[b"x-frame-options"] == b"SAMEORIGIN"
    assert found[b"referrer-policy"] == b"no-referrer"
