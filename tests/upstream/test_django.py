"""Django's own ``tests/asgi``, ``tests/handlers`` and ``tests/requests_tests``, of the
installed Django (each series in its cell), served by the runtime and by Django's
own ASGI handler: the two agree test for test, but for ``divergences.toml``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import inherited_environment
from tests.support.requirements import require
from tests.upstream import sources
from tests.upstream.compare import compare

pytestmark = [pytest.mark.slow, pytest.mark.series, pytest.mark.per_series]

LABELS = ("asgi", "handlers", "requests_tests")
RUNTESTS_OPTIONS = ("--settings=tests.upstream.django_settings", "--parallel=1", "--noinput")


def run_suite(tests: Path, serve: str, results: Path) -> subprocess.CompletedProcess[str]:
    environ = {
        **inherited_environment(),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(sources.ROOT), os.environ.get("PYTHONPATH")])
        ),
        "UPSTREAM_SERVE": serve,
        "UPSTREAM_RESULTS": str(results),
        "METRICS_PORT": "0",  # the runtime's stack without its metrics endpoint
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "runtests.py", *RUNTESTS_OPTIONS, *LABELS],
        cwd=tests,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_djangos_suites_agree_under_the_runtime_and_djangos_handler(tmp_path) -> None:
    try:
        tests = sources.tests_of("django") / "tests"
    except sources.NotAvailable as error:
        require(False, f"Django's own tests are not available here: {error}")
    for serve in ("django", "runtime"):
        run = run_suite(tests, serve, tmp_path / f"{serve}.json")
        assert (tmp_path / f"{serve}.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    import django

    oracle, ours = tmp_path / "django.json", tmp_path / "runtime.json"
    compare("django", f"Django {django.get_version()}", oracle, ours).check()
