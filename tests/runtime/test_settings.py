"""The settings helpers take what projects have: ``BASE_DIR`` as a ``str`` or a
``Path``, the project's own ``DATABASES``, ``MIDDLEWARE`` as a tuple, split settings
whose ``production.py`` sets ``LOGGING`` again; and stop in one line on what they
cannot use.

Most cases run a small project of the shapes real ones have (a settings package
with ``base.py`` and ``production.py``, ``os.path`` paths), in processes of its
own, as ``manage.py`` and Gunicorn would import it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from django_k8s_runtime import env, settings
from django_k8s_runtime.database import databases, own_databases_problems
from tests.support.adoption import clean_environment, wait_for
from tests.support.server import free_port

BASE = """\
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET_KEY = "settings-helpers-test-" + "k3y-" * 10
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
MIDDLEWARE = ("django.middleware.security.SecurityMiddleware",)  # a tuple, as Django allows
ROOT_URLCONF = "mysite.urls"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(BASE_DIR, "ourdb")},
    "archive": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(BASE_DIR, "old")},
}

from django_k8s_runtime import settings as runtime  # noqa: E402

DATABASES = runtime.databases(BASE_DIR, default=DATABASES)
MIDDLEWARE = runtime.middleware(MIDDLEWARE)
LOGGING = runtime.logging()
"""

PRODUCTION = """\
from .base import *  # noqa: F403

# The project's own logging, after the runtime's: it replaces it.
LOGGING = {"version": 1, "disable_existing_loggers": False}
"""

ASGI = """\
import os

from django_k8s_runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings.production")

application = get_asgi_application()
"""

SHOW = "from django.conf import settings; import json; print(json.dumps(settings.{}, default=str))"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("split-settings")
    package = root / "mysite"
    (package / "settings").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "urls.py": "urlpatterns = []\n",
        "asgi.py": ASGI,
        "settings/__init__.py": "",
        "settings/base.py": BASE,
        "settings/production.py": PRODUCTION,
    }.items():
        (package / name).write_text(text)
    return root


def python(project: Path, *args: str, module: str = "base", **environ: str):
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=clean_environment(DJANGO_SETTINGS_MODULE=f"mysite.settings.{module}", **environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def setting(project: Path, name: str, **environ: str):
    result = python(project, "-c", SHOW.format(name), **environ)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_a_string_base_dir_and_the_projects_own_databases_are_kept(project: Path) -> None:
    """Without DATABASE_URL the settings' DATABASES stay as they are: not an empty
    SQLite file beside BASE_DIR."""
    found = setting(project, "DATABASES")
    assert found["default"]["NAME"] == str(project / "ourdb")
    assert found["archive"]["NAME"] == str(project / "old")


def test_database_url_replaces_the_default_and_keeps_the_others(project: Path) -> None:
    """A relative SQLite path is beside BASE_DIR, a str here."""
    found = setting(project, "DATABASES", DATABASE_URL="sqlite:///from-the-url.sqlite3")
    assert found["default"]["NAME"] == str(project / "from-the-url.sqlite3")
    assert found["archive"]["NAME"] == str(project / "old")


def test_middleware_given_as_a_tuple(project: Path) -> None:
    assert setting(project, "MIDDLEWARE") == [
        settings.RECORD_ROUTE,
        "django.middleware.security.SecurityMiddleware",
    ]


def test_a_db_variable_beside_the_projects_own_databases_stops_in_one_line(
    project: Path,
) -> None:
    result = python(project, "-c", SHOW.format("DATABASES"), DB_POOL_MAX_SIZE="10")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "configuration error: DB_POOL_MAX_SIZE is set but DATABASE_URL is not: the settings' own "
        "DATABASES are used as they are, and DB_POOL_MAX_SIZE applies to DATABASE_URL's "
        "database only; set DATABASE_URL, or remove DB_POOL_MAX_SIZE."
    )
    checked = python(project, "-m", "django_k8s_runtime", "check-env", DB_POOL_MAX_SIZE="10")
    assert checked.returncode == 1
    assert "configuration error: DB_POOL_MAX_SIZE is set but DATABASE_URL is not" in (
        checked.stdout
    )


def test_logging_set_again_after_runtime_logging_is_warned_about(project: Path) -> None:
    line = (
        "LOGGING in mysite.settings.production replaces the one runtime.logging() gave: lines "
        "are not the runtime's"
    )
    checked = python(project, "-m", "django_k8s_runtime", "check-env", module="production")
    assert checked.returncode == 0, checked.stdout
    assert f"configuration warning: {line}" in checked.stdout
    system_check = python(
        project, "-m", "django", "check", "--fail-level", "ERROR", module="production"
    )
    assert "django_k8s_runtime.W001" in system_check.stderr, system_check.stderr
    assert line in system_check.stderr
    base = python(project, "-m", "django", "check", module="base")
    assert base.returncode == 0
    assert "W001" not in base.stdout + base.stderr  # base.py's LOGGING is the runtime's


@pytest.mark.slow
def test_gunicorn_warns_at_start_up_that_logging_was_replaced(project: Path) -> None:
    port = free_port()
    log = project / "gunicorn.log"
    environ = clean_environment(
        GUNICORN_HOST="127.0.0.1",
        GUNICORN_PORT=str(port),
        GUNICORN_WORKERS="1",
        METRICS_PORT="0",
        GUNICORN_SHUTDOWN_DELAY="0",
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [gunicorn, "-c", "python:django_k8s_runtime.gunicorn", "mysite.asgi:application"]
    with log.open("w") as output:
        server = subprocess.Popen(
            command, cwd=project, env=environ, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200, log)
    finally:
        server.terminate()
        server.wait(timeout=30)
    warnings = [line for line in log.read_text().splitlines() if "configuration warning" in line]
    assert len(warnings) == 1, log.read_text()
    assert "LOGGING in mysite.settings.production replaces" in warnings[0]


# In this process: the helpers given what they cannot use ------------------------------


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (
            lambda: settings.databases(None),
            "runtime.databases() takes the project's directory (BASE_DIR, a str or a Path) "
            "first; it was given NoneType None.",
        ),
        (
            lambda: settings.databases("/srv/app", default=["sqlite"]),
            "runtime.databases(default=...) takes the settings' own DATABASES (a dict of "
            "database settings by alias); it was given list ['sqlite'].",
        ),
        (
            lambda: settings.middleware("django.middleware.security.SecurityMiddleware"),
            "runtime.middleware() takes the settings' MIDDLEWARE (a list of dotted paths); it "
            "was given str 'django.middleware.security.SecurityMiddleware'.",
        ),
    ],
)
def test_a_helper_given_what_it_cannot_use_stops_in_one_line(call, line: str) -> None:
    with pytest.raises(env.ConfigError) as caught:
        call()
    assert caught.value.messages == (line,)


def test_a_string_base_dir_is_taken_as_a_path() -> None:
    assert settings.databases("some/str/path") == settings.databases(Path("some/str/path"))


OWN = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/app/ours"}}


def test_the_projects_own_databases_without_database_url() -> None:
    assert databases(Path("/srv/app"), env.load({}), OWN) == OWN
    assert own_databases_problems(env.load({})) == []


def test_every_db_variable_that_shapes_the_url_is_named_when_unused() -> None:
    snapshot = env.load({"DB_SSLMODE": "require", "DB_POOL": "false", "DB_REQUEST_TIMEOUTS": "0"})
    names = [line.split()[0] for line in own_databases_problems(snapshot)]
    assert names == ["DB_SSLMODE", "DB_POOL"]  # DB_REQUEST_TIMEOUTS bounds any PostgreSQL
    with_url = env.load({"DATABASE_URL": "postgres://app@db/shop", "DB_SSLMODE": "require"})
    assert own_databases_problems(with_url) == []
