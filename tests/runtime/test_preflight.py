"""The start-up hook (django_k8s_runtime.pth, _django_k8s_runtime_preflight.py): it
says Gunicorn's own variables' mistakes in one line before Gunicorn reads them, and
costs every other Python start in the environment nothing but a look at its name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_a_python_that_is_not_gunicorn_imports_nothing_of_the_runtime() -> None:
    probe = "import sys; print(sorted(name for name in sys.modules if 'k8s_runtime' in name))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_gunicorn_stops_on_web_concurrency_in_one_line_before_reading_it() -> None:
    environ = {**os.environ, "WEB_CONCURRENCY": "x"}
    result = subprocess.run(
        [BIN / "gunicorn", "--version"], env=environ, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "configuration error: WEB_CONCURRENCY='x' is not valid: expected a whole number "
        "(Gunicorn reads it before any configuration; GUNICORN_WORKERS, when set, decides "
        "the worker count)."
    )
