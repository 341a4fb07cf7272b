"""No variable is read behind the registry's back (CONSTITUTION.md, rule 1), in this
service's code: every access to the process environment (found as
tests/support/environment_access.py finds it) is listed here with the reason it is not
a configuration read. The runtime's code is tests/runtime/test_environment_reads.py's.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.environment_access import environment_accesses, python_files

# (file, variable, how) -> why that access is not a configuration read.
JUSTIFIED = {
    ("config/asgi.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): "Django's own variable",
    ("config/wsgi.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): "Django's own variable",
    ("manage.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): "Django's own variable",
}


def service_files() -> list[Path]:
    return python_files("config", "example", "manage.py")


def test_only_the_registry_reads_the_environment() -> None:
    unexplained = [
        str(access)
        for path in service_files()
        for access in environment_accesses(path)
        if access.key not in JUSTIFIED
    ]
    assert unexplained == [], "read through the runtime's registry (or justify it here)"


def test_every_justified_exception_is_still_there() -> None:
    """A stale exception would quietly allow a future read."""
    seen = {access.key for path in service_files() for access in environment_accesses(path)}
    assert set(JUSTIFIED) <= seen, set(JUSTIFIED) - seen
