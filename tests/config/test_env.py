"""Parsing and validation of every declared variable (config/env.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import env
from config.env import REGISTRY, ConfigError

ROOT = Path(__file__).resolve().parents[2]

SEED_DEFAULTS = {
    "GUNICORN_WORKERS": "4",
    "GUNICORN_PORT": "8000",
    "GUNICORN_TIMEOUT": "30",
    "GUNICORN_MAX_REQUESTS": "0",
    "GUNICORN_MAX_REQUESTS_JITTER": "0",
}


def test_the_requested_variables_have_exactly_the_requested_defaults() -> None:
    for name, default in SEED_DEFAULTS.items():
        assert REGISTRY[name].default == default
    assert list(REGISTRY)[:5] == list(SEED_DEFAULTS)


def test_defaults_parse() -> None:
    assert env.GUNICORN_WORKERS.value({}) == 4
    assert env.GUNICORN_PORT.value({}) == 8000
    assert env.GUNICORN_TIMEOUT.value({}) == 30
    assert env.GUNICORN_MAX_REQUESTS.value({}) == 0
    assert env.GUNICORN_MAX_REQUESTS_JITTER.value({}) == 0
    assert env.GUNICORN_HOST.value({}) == "0.0.0.0"
    assert env.GUNICORN_KEEPALIVE.value({}) == 75
    assert env.GUNICORN_ACCESS_LOG.value({}) is True
    assert env.DJANGO_DEBUG.value({}) is False


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("GUNICORN_WORKERS", "8", 8),
        ("GUNICORN_WORKERS", " 3 ", 3),
        ("GUNICORN_WORKERS", "auto", "auto"),
        ("GUNICORN_WORKERS", "AUTO", "auto"),
        ("GUNICORN_PORT", "1", 1),
        ("GUNICORN_PORT", "65535", 65535),
        ("GUNICORN_TIMEOUT", "1", 1),
        ("GUNICORN_MAX_REQUESTS", "1000", 1000),
        ("GUNICORN_HOST", "::", "::"),
        ("GUNICORN_HOST", "127.0.0.1", "127.0.0.1"),
        ("GUNICORN_ACCESS_LOG", "off", False),
        ("GUNICORN_ACCESS_LOG", "YES", True),
        ("GUNICORN_FORWARDED_ALLOW_IPS", "*", "*"),
        ("GUNICORN_FORWARDED_ALLOW_IPS", "10.0.0.0/8, 127.0.0.1", "10.0.0.0/8,127.0.0.1"),
        ("GUNICORN_SHUTDOWN_DELAY", "2.5", 2.5),
        ("GUNICORN_LOG_LEVEL", "WARNING", "warning"),
        ("HEALTH_CHECKS", "database,cache", ("database", "cache")),
        ("HEALTH_CHECKS", "", ()),
        ("DJANGO_ALLOWED_HOSTS", "a.example, b.example", ("a.example", "b.example")),
    ],
)
def test_good_values_parse(name: str, raw: str, expected: object) -> None:
    assert REGISTRY[name].value({name: raw}) == expected


BAD_VALUES = [
    ("GUNICORN_WORKERS", "four"),
    ("GUNICORN_WORKERS", "0"),
    ("GUNICORN_WORKERS", "-2"),
    ("GUNICORN_WORKERS", ""),
    ("GUNICORN_WORKERS", "2.5"),
    ("GUNICORN_WORKERS", "auto3"),
    ("GUNICORN_PORT", "0"),
    ("GUNICORN_PORT", "65536"),
    ("GUNICORN_PORT", "http"),
    ("GUNICORN_PORT", ""),
    ("GUNICORN_PORT", "-1"),
    ("GUNICORN_TIMEOUT", "0"),
    ("GUNICORN_TIMEOUT", "-5"),
    ("GUNICORN_TIMEOUT", "30s"),
    ("GUNICORN_TIMEOUT", ""),
    ("GUNICORN_MAX_REQUESTS", "-1"),
    ("GUNICORN_MAX_REQUESTS", "many"),
    ("GUNICORN_MAX_REQUESTS", ""),
    ("GUNICORN_MAX_REQUESTS_JITTER", "-1"),
    ("GUNICORN_MAX_REQUESTS_JITTER", ""),
    ("GUNICORN_GRACEFUL_TIMEOUT", "0"),
    ("GUNICORN_KEEPALIVE", "-1"),
    ("GUNICORN_HOST", "localhost"),
    ("GUNICORN_HOST", ""),
    ("GUNICORN_SHUTDOWN_DELAY", "-1"),
    ("GUNICORN_SHUTDOWN_DELAY", "nan"),
    ("GUNICORN_SHUTDOWN_DELAY", "inf"),
    ("GUNICORN_LOG_LEVEL", "verbose"),
    ("GUNICORN_ACCESS_LOG", "maybe"),
    ("GUNICORN_FORWARDED_ALLOW_IPS", "proxy.internal"),
    ("GUNICORN_FORWARDED_ALLOW_IPS", ""),
    ("GUNICORN_CONTROL_SOCKET", "relative/gunicorn.ctl"),
    ("DJANGO_DEBUG", "sometimes"),
    ("DJANGO_SECRET_KEY", "short"),
    ("DJANGO_SECRET_KEY", "django-insecure-" + "x" * 60),
    ("DB_SSLMODE", "verify"),
    ("DB_POOL_MAX_SIZE", "0"),
    ("HEALTH_CHECKS", "database,queue"),
    ("HEALTH_CHECK_TIMEOUT", "0"),
    ("LOG_FORMAT", "xml"),
    ("METRICS_PORT", "70000"),
]


@pytest.mark.parametrize(("name", "raw"), BAD_VALUES)
def test_bad_values_are_refused_with_one_line_naming_variable_value_and_rule(
    name: str, raw: str
) -> None:
    variable = REGISTRY[name]
    with pytest.raises(ConfigError) as caught:
        variable.value({name: raw})
    message = str(caught.value.code)
    assert "\n" not in message
    assert message.startswith(f"configuration error: {name}=")
    if "SECRET" in name:
        assert raw not in message  # a secret is never echoed, even a bad one
    else:
        assert repr(raw) in message
    assert "expected " + variable.parser.allowed in message


def test_web_concurrency_is_honoured_only_when_gunicorn_workers_is_unset() -> None:
    assert env.GUNICORN_WORKERS.value({"WEB_CONCURRENCY": "3"}) == 3
    assert env.GUNICORN_WORKERS.value({"WEB_CONCURRENCY": "3", "GUNICORN_WORKERS": "5"}) == 5
    with pytest.raises(ConfigError, match=r"WEB_CONCURRENCY \(read because GUNICORN_WORKERS"):
        env.GUNICORN_WORKERS.value({"WEB_CONCURRENCY": "zero"})


def test_check_reports_every_problem_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        env.check({"GUNICORN_PORT": "x", "GUNICORN_TIMEOUT": "-1"})
    lines = str(caught.value.code).splitlines()
    assert len(lines) == 2
    assert all(line.startswith("configuration error: GUNICORN_") for line in lines)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"GUNICORN_MAX_REQUESTS_JITTER": "50"}, "has no effect because GUNICORN_MAX_REQUESTS=0"),
        ({"DB_POOL_MIN_SIZE": "9", "DB_POOL_MAX_SIZE": "3"}, "DB_POOL_MIN_SIZE=9 is larger"),
        ({"METRICS_PORT": "8000"}, "must not be served on the public port"),
        ({"HEALTH_CHECKS": "database,cache"}, "CACHE_URL is empty"),
    ],
)
def test_contradictions_between_variables_are_refused(environ: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        env.check(environ)


def test_readme_table_is_generated_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- env-table:start -->\n", "<!-- env-table:end -->"
    assert start in readme, "README.md lacks the generated variables table"
    assert end in readme, "README.md lacks the generated variables table's end"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table.strip() == env.markdown_table().strip(), (
        "README's variables table is out of date: run `make docs`"
    )


def test_every_variable_read_in_code_is_declared() -> None:
    """No variable read behind the registry's back (it would be undocumented)."""
    pattern = re.compile(r"os\.environ(?:\.get)?\(\s*[\"']([A-Z_]+)[\"']|getenv\([\"']([A-Z_]+)")
    allowed = {"DJANGO_SETTINGS_MODULE"}
    for path in [
        *ROOT.glob("config/*.py"),
        *ROOT.glob("server/*.py"),
        *ROOT.glob("health/*.py"),
        *ROOT.glob("observability/*.py"),
    ]:
        for match in pattern.finditer(path.read_text()):
            name = match.group(1) or match.group(2)
            assert name in REGISTRY or name in allowed, f"{path.name} reads undeclared {name}"
