"""The layering PROJECT.md describes, checked.

* Inside the runtime, server/, health/ and observability/ import none of each
  other and nothing else of the runtime but one leaf, ``asgi_types`` (ASGI's
  shapes and the small response), which imports nothing of the runtime: the
  composition root (asgi.py) hands each layer what it needs.
* Nothing in the runtime imports this project (config/, example/).
* This project uses the runtime only through its public modules, as any project
  would (django_k8s_runtime.PUBLIC_MODULES), and of each only the names its
  ``__all__`` declares.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from django_k8s_runtime import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime" / "src" / "django_k8s_runtime"
LAYERS = ("server", "health", "observability")
LEAF = "django_k8s_runtime.asgi_types"  # what every layer may import


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
        if name.startswith("django_k8s_runtime")
        and not name.startswith(own)
        and not name.startswith(LEAF)
    }
    assert others == set(), "pass it in from django_k8s_runtime/asgi.py instead"


def test_the_leaf_the_layers_share_imports_nothing_of_the_runtime() -> None:
    found = {
        (path, name)
        for path, name in imports(RUNTIME)
        if path.endswith("/asgi_types.py") and name.startswith("django_k8s_runtime")
    }
    assert found == set()


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


def public_names(module: str) -> set[str]:
    """The names a public module's ``__all__`` declares, read from its source (importing
    the Gunicorn config module would run it)."""
    path = RUNTIME.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{module} declares no __all__")


def defined_names(module: str) -> set[str]:
    """Every name bound at the top of a module (definitions, assignments, imports),
    also inside a top-level ``try`` or ``if``."""
    path = RUNTIME.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    found = set()
    nodes = list(ast.parse(path.read_text()).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.Try | ast.If):
            nodes += [*node.body, *node.orelse, *getattr(node, "handlers", ())]
        elif isinstance(node, ast.ExceptHandler):
            nodes += node.body
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {target.id for target in targets if isinstance(target, ast.Name)}
    return found


def names_used(directory: Path) -> set[tuple[str, str, str]]:
    """(file, public module, name) for every name this project takes from one:
    ``from module import name``, and ``module.name`` where a module is bound."""
    found = set()
    for path in directory.rglob("*.py"):
        tree = ast.parse(path.read_text())
        bound = {}  # local name -> public module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in PUBLIC_MODULES:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if submodule in PUBLIC_MODULES:
                        bound[alias.asname or alias.name] = submodule
                    else:
                        found.add((str(path.relative_to(ROOT)), node.module, alias.name))
            elif isinstance(node, ast.Import):
                bound |= {a.asname: a.name for a in node.names if a.asname in PUBLIC_MODULES}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
            ):
                found.add((str(path.relative_to(ROOT)), bound[node.value.id], node.attr))
    return found


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_a_public_module_declares_its_surface_by_name(module: str) -> None:
    missing = public_names(module) - defined_names(module)
    assert missing == set(), f"{module}.__all__ names what it does not define"


@pytest.mark.parametrize("package", ["config", "example"])
def test_this_project_uses_only_the_names_the_public_modules_declare(package: str) -> None:
    private = {
        (path, module, name)
        for path, module, name in names_used(ROOT / package)
        if name not in public_names(module)
    }
    assert private == set(), "add it to the module's __all__ (a change of the surface), or not"


def test_the_checks_can_see_an_import() -> None:
    assert ("config/asgi.py", "django_k8s_runtime.asgi") in imports(ROOT / "config")
    uses = names_used(ROOT / "config")
    assert ("config/settings.py", "django_k8s_runtime.settings", "checked") in uses
    assert ("config/env.py", "django_k8s_runtime.env", "declare") in uses
    assert ("config/env.py", "django_k8s_runtime.validation", "rule") in uses
    handler = "runtime/src/django_k8s_runtime/server/handler.py"
    assert (handler, "django_k8s_runtime.server.threads") in imports(RUNTIME / "server")
    assert (handler, LEAF) in imports(RUNTIME / "server")
