"""No variable is read behind the registry's back (CONSTITUTION.md, rule 1), in the
runtime.

Every form of access to the process environment in the runtime's code is found by
walking the syntax tree (tests/support/environment_access.py): ``os.environ.get(...)``,
``os.environ[...]``, ``... in os.environ``, ``os.getenv(...)``, ``from os import
environ``, and the environment handed over whole. Only the registry
(django_k8s_runtime/registry.py, which reads what env.py and a project declare) may
read it; every other access is listed below with the reason it is not a configuration
read. This service's code is tests/project/test_environment_reads.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.environment_access import ROOT, environment_accesses, python_files

RUNTIME = "runtime/src/django_k8s_runtime"
REGISTRY_MODULE = f"{RUNTIME}/registry.py"

# (file, variable, how) -> why that access is not a configuration read.
JUSTIFIED = {
    (f"{RUNTIME}/gunicorn.py", "DJANGO_SETTINGS_MODULE", "reads"): (
        "Django's own variable: the master imports the settings module the workers will run"
    ),
    (f"{RUNTIME}/__main__.py", "DJANGO_SETTINGS_MODULE", "reads"): (
        "Django's own variable: check-env imports the project's settings, as start-up does"
    ),
    (f"{RUNTIME}/__main__.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): (
        "Django's own variable: check-env sets Django up with --settings to import the "
        "readiness checks HEALTH_CHECKS names"
    ),
    (f"{RUNTIME}/settings.py", "DJANGO_SETTINGS_MODULE", "reads"): (
        "Django's own variable: which settings module's LOGGING is the final one, before "
        "Django is set up (the warning when it replaced runtime.logging()'s)"
    ),
    (f"{RUNTIME}/observability/multiprocess.py", "PROMETHEUS_MULTIPROC_DIR", "sets"): (
        "prometheus_client finds its multiprocess directory there"
    ),
    ("runtime/src/_django_k8s_runtime_preflight.py", "WEB_CONCURRENCY", "reads"): (
        "Gunicorn's own variable, which Gunicorn reads before any config module runs: "
        "checked only so that its mistake gets one line instead of a traceback"
    ),
    ("runtime/src/_django_k8s_runtime_preflight.py", "GUNICORN_CMD_ARGS", "reads"): (
        "Gunicorn parses it before any config module runs: checked (by the registry's "
        "declaration) only so that a mistake gets one line instead of Gunicorn's usage text"
    ),
    (f"{RUNTIME}/__main__.py", "WEB_CONCURRENCY", "reads"): (
        "Gunicorn's own variable, read by Gunicorn even when GUNICORN_WORKERS is set: "
        "check-env says what start-up would"
    ),
}


def runtime_files() -> list[Path]:
    return python_files("runtime/src")


def test_only_the_registry_reads_the_environment() -> None:
    unexplained = [
        str(access)
        for path in runtime_files()
        if str(path.relative_to(ROOT)) != REGISTRY_MODULE
        for access in environment_accesses(path)
        if access.key not in JUSTIFIED
    ]
    assert unexplained == [], "read through the registry (or justify it here)"


def test_every_justified_exception_is_still_there() -> None:
    """A stale exception would quietly allow a future read."""
    seen = {access.key for path in runtime_files() for access in environment_accesses(path)}
    assert set(JUSTIFIED) <= seen, set(JUSTIFIED) - seen


@pytest.mark.parametrize(
    ("source", "variable", "how"),
    [
        ("os.environ.get('SECRET')", "SECRET", "reads"),
        ("os.environ['SECRET']", "SECRET", "reads"),
        ("x = 'SECRET' in os.environ", "SECRET", "reads"),
        ("os.getenv('SECRET', '')", "SECRET", "reads"),
        ("os.environ.setdefault('SECRET', '1')", "SECRET", "sets if unset"),
        ("KEY = 'SECRET'\nos.environ[KEY] = '1'", "SECRET", "sets"),
        ("del os.environ['SECRET']", "SECRET", "removes"),
        ("dict(os.environ)", None, "reads"),
        ("from os import environ", None, "reads"),
        ("from os import getenv", None, "reads"),
    ],
)
def test_every_form_of_access_is_found(tmp_path: Path, source: str, variable, how) -> None:
    path = tmp_path / "sample.py"
    path.write_text("import os\n" + source + "\n")
    (access,) = environment_accesses(path, root=tmp_path)
    assert (access.variable, access.how) == (variable, how)
