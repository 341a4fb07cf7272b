"""The example app's views on the service's own settings: views_in_process.py's tests,
in a pytest process whose Django is the service (``--ds config.settings``), as this
one's is the runtime's test site (tests/site/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.server import run

CASES = Path(__file__).with_name("views_in_process.py")


@pytest.mark.slow
def test_the_example_views_on_the_services_settings() -> None:
    result = run(
        ["python", "-m", "pytest", "-q", "--ds", "config.settings", str(CASES)],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert re.search(r"^\d+ passed\b", result.stdout, re.MULTILINE), result.stdout
