"""Every place Python source touches the process environment (``os.environ``,
``os.getenv`` and friends), found by walking its syntax tree: for the tests that no
variable is read behind the registry's back (CONSTITUTION.md, rule 1), the runtime's
(tests/runtime/test_environment_reads.py) and this service's
(tests/project/test_environment_reads.py)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


@dataclass(frozen=True)
class Access:
    path: str
    line: int
    variable: str | None  # None: the name is not a literal (or the whole environment)
    how: str  # reads, sets, sets if unset, removes...

    @property
    def key(self) -> tuple[str, str | None, str]:
        return self.path, self.variable, self.how

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.how} {self.variable or 'the environment'}"


def environment_accesses(path: Path, root: Path = ROOT) -> list[Access]:
    """Every place in ``path`` that touches ``os.environ``, ``os.getenv`` and friends."""
    tree = ast.parse(path.read_text(), filename=str(path))
    relative = str(path.relative_to(root))
    constants = _module_constants(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                Access(relative, node.lineno, None, "reads")
                for alias in node.names
                if alias.name in ENVIRONMENT_NAMES
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ENVIRONMENT_NAMES
        ):
            key, how = _what_is_accessed(node, parents)
            found.append(Access(relative, node.lineno, _literal(key, constants), how))
    return found


METHODS = {"get": "reads", "setdefault": "sets if unset", "pop": "removes"}


def _what_is_accessed(
    node: ast.Attribute, parents: dict[ast.AST, ast.AST]
) -> tuple[ast.AST | None, str]:
    """The expression naming the variable, if any, and what is done with it."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript):  # os.environ["X"], = ..., del ...
        how = {ast.Store: "sets", ast.Del: "removes"}.get(type(parent.ctx), "reads")
        return parent.slice, how
    if isinstance(parent, ast.Call) and parent.func is node:  # os.getenv("X")
        return (parent.args[0] if parent.args else None), "reads"
    if isinstance(parent, ast.Attribute):  # os.environ.get("X"), .setdefault, .pop ...
        call = parents.get(parent)
        key = call.args[0] if isinstance(call, ast.Call) and call.args else None
        return key, METHODS.get(parent.attr, parent.attr)
    if isinstance(parent, ast.Compare) and parent.comparators[0] is node:  # "X" in os.environ
        return parent.left, "reads"
    return None, "reads"  # the whole environment, handed over


def _literal(key: ast.AST | None, constants: dict[str, str]) -> str | None:
    """The variable's name, where it is a literal (or a module constant)."""
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key.value
    if isinstance(key, ast.Name):
        return constants.get(key.id)
    return None


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        if isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def python_files(*entries: str, root: Path = ROOT) -> list[Path]:
    """The Python files of these directories and files, migrations left out."""
    files: list[Path] = []
    for entry in entries:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [path for path in files if "migrations" not in path.parts]
