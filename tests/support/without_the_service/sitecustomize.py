"""Imported by Python at start-up in a process whose ``PYTHONPATH`` names this
directory: the service's packages cannot be imported there, whatever its working
directory and ``sys.path``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

SERVICE = ("config", "example")


class ServiceHidden:
    """A finder ahead of every other: a module of the service is not found."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.partition(".")[0] in SERVICE:
            raise ModuleNotFoundError(
                f"No module named {name!r}: the runtime's tests run without this "
                "repository's service (config/, example/)",
                name=name,
            )
        return None


if __name__ == "sitecustomize":
    sys.meta_path.insert(0, ServiceHidden())
