"""Uvicorn's own ``tests/protocols/test_http.py`` and ``test_websocket.py``, of the
installed Uvicorn, against the runtime's HTTP and WebSocket protocols and against
Uvicorn's own: the two agree test for test, but for ``divergences.toml``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import inherited_environment
from tests.support.requirements import require
from tests.upstream import sources
from tests.upstream.compare import compare

pytestmark = pytest.mark.slow

SUITES = ("tests/protocols/test_http.py", "tests/protocols/test_websocket.py")
PLUGIN = Path(__file__).with_name("runtime_protocols.py")
# Uvicorn's own configuration but for its -n 8 (xdist), without pytest-django; a test
# that hangs fails on its own instead of holding the run.
PYTEST_OPTIONS = ("-q", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:django")
PYTEST_OPTIONS += ("--timeout=60",)


def copy_of_uvicorns_tests(into: Path) -> Path:
    """Uvicorn's tests without its sources (the installed Uvicorn is tested), with a
    conftest that hands them the classes to test."""
    try:
        source = sources.tests_of("uvicorn")
    except sources.NotAvailable as error:
        require(False, f"Uvicorn's own tests are not available here: {error}")
    copy = into / "uvicorn-tests"
    shutil.copytree(source / "tests", copy / "tests")
    shutil.copy(source / "pyproject.toml", copy)
    (copy / "tests" / "protocols" / "conftest.py").write_text(
        "from runtime_protocols import *  # noqa: F403 - the classes under test\n"
        "from runtime_protocols import pytest_runtest_logreport, pytest_sessionfinish  # noqa\n"
    )
    return copy


def run_suites(copy: Path, serve: str, results: Path) -> subprocess.CompletedProcess[str]:
    environ = {
        **inherited_environment(),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PLUGIN.parent), os.environ.get("PYTHONPATH")])
        ),
        "UPSTREAM_SERVE": serve,
        "UPSTREAM_RESULTS": str(results),
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", *SUITES, *PYTEST_OPTIONS],
        cwd=copy,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_uvicorns_protocol_suites_agree_under_the_runtimes_protocols(tmp_path) -> None:
    copy = copy_of_uvicorns_tests(tmp_path)
    for serve in ("uvicorn", "runtime"):
        run = run_suites(copy, serve, tmp_path / f"{serve}.json")
        assert (tmp_path / f"{serve}.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    import uvicorn

    oracle, ours = tmp_path / "uvicorn.json", tmp_path / "runtime.json"
    compare("uvicorn", f"Uvicorn {uvicorn.__version__}", oracle, ours).check()
