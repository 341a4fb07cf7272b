"""What a test needs from the machine: skip on a laptop that lacks it, fail under CI.

A skipped test under CI would be a test silently not run, so with ``CI=true`` a
missing tool or server fails the test instead, with the same reason.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip with a reason on a laptop that lacks something; fail under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    require(not missing, f"missing {', '.join(missing)} (make system-packages installs them)")
