"""This repository's service (config/, example/) made unimportable: in the pytest
process while the runtime's tests run, and in every Python process they start, whose
``PYTHONPATH`` names this directory (sitecustomize.py). tests/runtime/conftest.py
does both."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.without_the_service.sitecustomize import SERVICE, ServiceHidden

DIRECTORY = Path(__file__).resolve().parent


@contextlib.contextmanager
def without_the_service() -> Iterator[None]:
    """No module of the service can be imported here, nor in a process started meanwhile;
    what this process imported of it before (another directory's tests) is set aside."""
    set_aside = {
        name: sys.modules.pop(name)
        for name in list(sys.modules)
        if name.partition(".")[0] in SERVICE
    }
    finder = ServiceHidden()
    sys.meta_path.insert(0, finder)
    python_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DIRECTORY), python_path]))
    try:
        yield
    finally:
        if python_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = python_path
        sys.meta_path.remove(finder)
        sys.modules.update(set_aside)
