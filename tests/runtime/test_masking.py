"""One rule for secrets in whatever the runtime shows (django_k8s_runtime/masking.py):
a value under a secret's name is hidden whole, in its error line as in ``check-env``;
a URL never shows a password."""

from __future__ import annotations

import pytest

from django_k8s_runtime import env
from django_k8s_runtime.__main__ import shown_value
from django_k8s_runtime.masking import names_a_secret, redact_url
from django_k8s_runtime.registry import REGISTRY


@pytest.fixture
def api_token():
    """A project's variable whose name says it is a secret (and not SECRET)."""
    variable = env.declare("EXAMPLE_API_TOKEN", None, env.text(), "A token.", "Example")
    yield variable
    del REGISTRY[variable.name]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://app:pw@db:5432/app", "postgres://app:***@db:5432/app"),
        (
            "postgres://app@db/app?sslmode=require&password=pw&sslpassword=pw",
            "postgres://app@db/app?sslmode=require&password=***&sslpassword=***",
        ),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("http://api/?token=pw&api_key=pw&page=2", "http://api/?token=***&api_key=***&page=2"),
        ("postgres://app:p/w?d@db/app", "postgres://app:***@db/app"),  # unescaped, still hidden
        ("postgres://app@db/app", "postgres://app@db/app"),
        ("sqlite:///db.sqlite3", "sqlite:///db.sqlite3"),
    ],
)
def test_one_rule_stars_every_password_of_a_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DJANGO_SECRET_KEY", True),
        ("REDIS_PASSWORD", True),
        ("EXAMPLE_API_TOKEN", True),
        ("API_KEY", True),
        ("DB_SSLKEY", False),  # the key's file, not the key
        ("DATABASE_URL", False),  # shown, with its password starred
        ("GUNICORN_TIMEOUT", False),
    ],
)
def test_a_name_says_whether_its_value_is_a_secret(name: str, secret: bool) -> None:
    assert names_a_secret(name) is secret


def test_a_secret_that_does_not_parse_is_not_echoed_in_its_error(api_token) -> None:
    (line,) = env.load({"EXAMPLE_API_TOKEN": "   "}).problems
    assert line == "EXAMPLE_API_TOKEN=<hidden> is not valid: expected a non-empty text."


def test_check_env_hides_a_secret_by_the_same_rule(api_token) -> None:
    assert shown_value("EXAMPLE_API_TOKEN", "tok-123") == "<hidden>"
    assert shown_value("DJANGO_SECRET_KEY", "k" * 50) == "<hidden>"
    assert shown_value("DATABASE_URL", "postgres://app:pw@db/app") == "postgres://app:***@db/app"
    assert shown_value("DB_SSLKEY", "/etc/app/client.key") == "/etc/app/client.key"
