"""What Python source imports and uses of the runtime's public surface, read from its
syntax tree (nothing is imported): for the layering tests of the runtime
(tests/runtime/test_layers.py) and of this service (tests/project/test_layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from django_k8s_runtime import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime" / "src" / "django_k8s_runtime"


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
