"""The layering PROJECT.md describes, checked.

* Inside the runtime, server/, health/ and observability/ import none of each
  other and nothing else of the runtime: the composition root (asgi.py) hands
  each what it needs.
* Nothing in the runtime imports this project (config/, example/).
* This project uses the runtime only through its public modules, as any project
  would (django_k8s_runtime.PUBLIC_MODULES).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from django_k8s_runtime import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime" / "src" / "django_k8s_runtime"
LAYERS = ("server", "health", "observability")


def imports(directory: Path, root: Path = ROOT) -> set[tuple[str, str]]:
    """(file, imported module) for every absolute import in ``directory``."""
    found = set()
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found |= {(str(path.relative_to(root)), name) for name in names}
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_a_runtime_layer_imports_only_itself(layer: str) -> None:
    own = f"django_k8s_runtime.{layer}"
    others = {
        (path, name)
        for path, name in imports(RUNTIME / layer)
        if name.startswith("django_k8s_runtime") and not name.startswith(own)
    }
    assert others == set(), "pass it in from django_k8s_runtime/asgi.py instead"


def test_the_runtime_never_imports_this_project() -> None:
    project = {"config", "example", "tests", "bench", "harness"}
    found = {(path, name) for path, name in imports(RUNTIME) if name.split(".")[0] in project}
    assert found == set()


@pytest.mark.parametrize("package", ["config", "example"])
def test_this_project_uses_only_the_runtimes_public_modules(package: str) -> None:
    private = {
        (path, name)
        for path, name in imports(ROOT / package)
        if name.startswith("django_k8s_runtime")
        and name not in PUBLIC_MODULES
        and name.rsplit(".", 1)[0] not in PUBLIC_MODULES  # `from public import name`
    }
    assert private == set(), "use the runtime's public surface, as any project would"


def test_the_checks_can_see_an_import() -> None:
    assert ("config/asgi.py", "django_k8s_runtime.asgi") in imports(ROOT / "config")
    handler = "runtime/src/django_k8s_runtime/server/handler.py"
    assert (handler, "django_k8s_runtime.server.threads") in imports(RUNTIME / "server")
