"""The layering PROJECT.md describes, checked: config composes; the runtime
packages (server/, health/, observability/) import none of each other and never
config, so each can be lifted into another service on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"config", "server", "health", "observability", "example"}


def project_imports(package: str) -> set[tuple[str, str]]:
    """(module, imported project package) for every import in ``package``."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT_PACKAGES:
                    found.add((str(path.relative_to(ROOT)), top))
    return found


@pytest.mark.parametrize("package", ["server", "health", "observability"])
def test_a_runtime_package_imports_only_itself(package: str) -> None:
    others = {(module, top) for module, top in project_imports(package) if top != package}
    assert others == set(), "pass it in from config/asgi.py instead"


def test_the_check_can_see_an_import() -> None:
    assert ("config/asgi.py", "server") in project_imports("config")
