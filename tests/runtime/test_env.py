"""Parsing and validation of every declared variable: the runtime's
(django_k8s_runtime/env.py), and a project's, declared with its ``declare()`` (the
test site's, tests/site/env.py)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from django_k8s_runtime import env, validation
from django_k8s_runtime.env import REGISTRY, ConfigError

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
    defaults = env.load({})
    assert defaults.GUNICORN_WORKERS == 4
    assert defaults.GUNICORN_PORT == 8000
    assert defaults.GUNICORN_TIMEOUT == 30
    assert defaults.GUNICORN_MAX_REQUESTS == 0
    assert defaults.GUNICORN_MAX_REQUESTS_JITTER == 0
    assert defaults.GUNICORN_HOST == "0.0.0.0"
    assert defaults.GUNICORN_KEEPALIVE == 75
    assert defaults.GUNICORN_ACCESS_LOG is True
    assert defaults.DJANGO_DEBUG is False
    assert defaults.DJANGO_SECRET_KEY is None  # required, no default
    assert defaults.problems == []


def test_the_snapshot_is_parsed_once_and_frozen() -> None:
    environ = {"GUNICORN_TIMEOUT": "7"}
    snapshot = env.load(environ)
    environ["GUNICORN_TIMEOUT"] = "9"  # later changes to the environment do not leak in
    assert snapshot.GUNICORN_TIMEOUT == snapshot["GUNICORN_TIMEOUT"] == 7
    assert dict(snapshot)["GUNICORN_TIMEOUT"] == 7
    assert set(snapshot) == set(REGISTRY)
    with pytest.raises(AttributeError):
        snapshot.GUNICORN_TIMEOUT = 8  # type: ignore[misc]
    with pytest.raises(AttributeError, match="GUNICORN_TIMOUT is not a declared variable"):
        snapshot.GUNICORN_TIMOUT  # noqa: B018 - a typo is an error, not None
    with pytest.raises(KeyError):
        snapshot["UNDECLARED"]
    assert "GUNICORN_TIMEOUT" in snapshot
    assert "UNDECLARED" not in snapshot
    assert copy.deepcopy(snapshot).GUNICORN_TIMEOUT == 7  # a frozen copy


def test_the_process_snapshot_is_loaded_once() -> None:
    assert env.snapshot() is env.snapshot()


def test_each_value_says_where_it_came_from() -> None:
    snapshot = env.load({"GUNICORN_PORT": "8080", "WEB_CONCURRENCY": "3"})
    assert snapshot.source("GUNICORN_PORT") == "GUNICORN_PORT"
    assert snapshot.source("GUNICORN_WORKERS") == "WEB_CONCURRENCY"
    assert snapshot.source("GUNICORN_TIMEOUT") == "default"
    assert env.load({"GUNICORN_WORKERS": "2"}).source("GUNICORN_WORKERS") == "GUNICORN_WORKERS"


def test_a_value_that_did_not_parse_is_a_problem_and_cannot_be_read() -> None:
    snapshot = env.load({"GUNICORN_PORT": "http", "GUNICORN_TIMEOUT": "5"})
    assert snapshot.GUNICORN_TIMEOUT == 5  # the others are still there
    assert snapshot.problems == [
        "GUNICORN_PORT='http' is not valid: expected a whole number from 1 to 65535."
    ]
    with pytest.raises(ConfigError, match="GUNICORN_PORT='http' is not valid"):
        snapshot.GUNICORN_PORT  # noqa: B018


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
        ("WEBSOCKET_MAX_MESSAGE_SIZE", "65536", 65536),
        ("WEBSOCKET_PING_INTERVAL", "0", 0.0),
        ("WEBSOCKET_PING_TIMEOUT", "2.5", 2.5),
        ("WEBSOCKET_MAX_CONNECTIONS", "5000", 5000),
        (
            "WEBSOCKET_ALLOWED_ORIGINS",
            "https://a.example, .b.example",
            ("https://a.example", ".b.example"),
        ),
        ("WEBSOCKET_ALLOWED_ORIGINS", "*", ("*",)),
        ("CHANNEL_LAYER_URL", "redis://redis:6379/1", "redis://redis:6379/1"),
        ("HEALTH_PATH", "/readyz", "/readyz"),
        ("HEALTH_LIVE_PATH", " /-/k8s/live ", "/-/k8s/live"),
        ("REQUEST_MAX_BODY_SIZE", "104857600", 104857600),
    ],
)
def test_good_values_parse(name: str, raw: str, expected: object) -> None:
    assert env.load({name: raw})[name] == expected


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
    ("WEBSOCKET_MAX_MESSAGE_SIZE", "100"),
    ("WEBSOCKET_MAX_MESSAGE_SIZE", "1MB"),
    ("WEBSOCKET_PING_INTERVAL", "-1"),
    ("WEBSOCKET_PING_TIMEOUT", "0"),
    ("WEBSOCKET_MAX_CONNECTIONS", "0"),
    ("CHANNEL_LAYER_URL", "redis-server:6379"),
    ("HEALTH_PATH", "health"),
    ("HEALTH_PATH", "/"),
    ("HEALTH_PATH", "/readyz/"),
    ("HEALTH_PATH", "/ready?full=1"),
    ("HEALTH_PATH", "//readyz"),
    ("HEALTH_PATH", "/probes/../health"),
    ("HEALTH_LIVE_PATH", "/live z"),
    ("REQUEST_MAX_BODY_SIZE", "32m"),
    ("REQUEST_MAX_BODY_SIZE", "0"),
]


@pytest.mark.parametrize(("name", "raw"), BAD_VALUES)
def test_bad_values_are_refused_with_one_line_naming_variable_value_and_rule(
    name: str, raw: str
) -> None:
    variable = REGISTRY[name]
    with pytest.raises(ConfigError) as caught:
        env.load({name: raw})[name]
    message = str(caught.value.code)
    assert "\n" not in message
    assert message.startswith(f"configuration error: {name}=")
    if "SECRET" in name:
        assert raw not in message  # a secret is never echoed, even a bad one
    else:
        assert repr(raw) in message
    assert "expected " + variable.parser.allowed in message


def test_web_concurrency_is_honoured_only_when_gunicorn_workers_is_unset() -> None:
    assert env.load({"WEB_CONCURRENCY": "3"}).GUNICORN_WORKERS == 3
    assert env.load({"WEB_CONCURRENCY": "3", "GUNICORN_WORKERS": "5"}).GUNICORN_WORKERS == 5
    with pytest.raises(ConfigError, match=r"WEB_CONCURRENCY \(read because GUNICORN_WORKERS"):
        env.load({"WEB_CONCURRENCY": "zero"}).GUNICORN_WORKERS  # noqa: B018


def check(environ: dict[str, str]) -> None:
    validation.check(env.load({"DJANGO_SECRET_KEY": "k" * 40 + "0123456789", **environ}))


def test_check_reports_every_problem_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        check({"GUNICORN_PORT": "x", "GUNICORN_TIMEOUT": "-1"})
    lines = str(caught.value.code).splitlines()
    assert len(lines) == 2
    assert all(line.startswith("configuration error: GUNICORN_") for line in lines)


def test_check_reports_problems_of_every_concern_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        validation.check(
            env.load(
                {
                    "GUNICORN_TIMEOUT": "soon",  # a value that does not parse
                    "GUNICORN_MAX_REQUESTS_JITTER": "5",  # a rule between variables
                    "DATABASE_URL": "postgres://app:s3cret@db/app",
                    "DB_SSLMODE": "verify-full",
                    "DB_SSLROOTCERT": "/nonexistent/ca.crt",  # a file that is not there
                    "DB_SSLCERT": "/nonexistent/client.crt",  # ...and its key is missing
                    "METRICS_PORT": "0",
                    "PROMETHEUS_MULTIPROC_DIR": "/tmp/does-not-exist",  # metrics off
                }  # and no DJANGO_SECRET_KEY
            )
        )
    lines = caught.value.messages
    assert [line.split("=")[0].split(" ")[0] for line in lines] == [
        "GUNICORN_TIMEOUT",
        "GUNICORN_MAX_REQUESTS_JITTER",
        "DB_SSLROOTCERT",
        "DB_SSLCERT",
        "DB_SSLCERT",  # ... and DB_SSLKEY go together
        "PROMETHEUS_MULTIPROC_DIR",
        "DJANGO_SECRET_KEY",  # the project's own rule (tests/site/env.py), after the runtime's
    ], lines
    assert str(caught.value.code).splitlines() == [f"configuration error: {m}" for m in lines]
    assert "s3cret" not in str(caught.value.code)


def test_a_rule_about_a_value_that_did_not_parse_is_skipped() -> None:
    """Its own line says what is wrong; the rule would only repeat it or crash."""
    with pytest.raises(ConfigError) as caught:
        check({"GUNICORN_MAX_REQUESTS_JITTER": "5", "GUNICORN_MAX_REQUESTS": "many"})
    assert caught.value.messages == (
        "GUNICORN_MAX_REQUESTS='many' is not valid: expected a whole number from 0 to 10000000.",
    )


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"GUNICORN_MAX_REQUESTS_JITTER": "50"}, "has no effect because GUNICORN_MAX_REQUESTS=0"),
        ({"DB_POOL_MIN_SIZE": "9", "DB_POOL_MAX_SIZE": "3"}, "DB_POOL_MIN_SIZE=9 is larger"),
        ({"METRICS_PORT": "8000"}, "must not be served on the public port"),
        ({"HEALTH_CHECKS": "database,cache"}, "CACHE_URL is empty"),
        (
            {"METRICS_PORT": "0", "PROMETHEUS_MULTIPROC_DIR": "/dev/shm/metrics"},
            "PROMETHEUS_MULTIPROC_DIR='/dev/shm/metrics' has no effect because METRICS_PORT=0",
        ),
        (
            {"WEBSOCKET_PING_INTERVAL": "0", "WEBSOCKET_PING_TIMEOUT": "5"},
            "WEBSOCKET_PING_TIMEOUT=5 has no effect because WEBSOCKET_PING_INTERVAL=0",
        ),
        (
            {"HEALTH_PATH": "/probe", "HEALTH_LIVE_PATH": "/probe"},
            "HEALTH_PATH and HEALTH_LIVE_PATH are both '/probe'",
        ),
    ],
)
def test_contradictions_between_variables_are_refused(environ: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)) as caught:
        check(environ)
    assert len(caught.value.messages) == 1


def test_a_projects_rule_runs_with_the_runtimes() -> None:
    with pytest.raises(ConfigError) as caught:
        validation.check(env.load({}))
    assert caught.value.messages == (
        "DJANGO_SECRET_KEY is not set; the test site needs one unless DJANGO_DEBUG.",
    )


def test_debug_needs_no_secret_key_and_metrics_off_need_no_directory() -> None:
    validation.check(env.load({"DJANGO_DEBUG": "true", "METRICS_PORT": "0"}))


def test_the_runtime_declares_none_of_djangos_own_variables() -> None:
    names = {variable.name for variable in env.RUNTIME_VARIABLES}
    assert not {name for name in names if name.startswith(("DJANGO_", "EXAMPLE_"))}
    assert {"DJANGO_SECRET_KEY", "UPSTREAM_URL"} <= set(env.REGISTRY)  # tests/site/env.py


def test_more_threads_than_pooled_connections_is_a_warning_not_an_error() -> None:
    postgres = {
        "DATABASE_URL": "postgres://app:pw@db:5432/app",
        "DB_POOL_MAX_SIZE": "5",
        "DJANGO_SECRET_KEY": "x" * 40 + "abcdefghij",
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    }
    snapshot = env.load(postgres)
    assert validation.problems(snapshot) == []
    (line,) = validation.warnings(snapshot, timeout=30, graceful_timeout=30, threads=8)
    assert line.startswith("GUNICORN_THREADS=8 is more than DB_POOL_MAX_SIZE=5")
    assert validation.warnings(snapshot, timeout=30, graceful_timeout=30, threads=5) == []
    sqlite = env.load({"DATABASE_URL": "sqlite:///db.sqlite3", "DJANGO_ALLOWED_HOSTS": "a.b"})
    assert validation.warnings(sqlite, timeout=30, graceful_timeout=30, threads=8) == []


def test_no_pings_alone_is_fine() -> None:
    check({"WEBSOCKET_PING_INTERVAL": "0"})  # the timeout's default is no mistake
