"""The contract between the runtime's modules, checked: the scope keys the layers
share are named once (``asgi_types``), its modules import one another without a
circle, and a variable is declared once."""

from __future__ import annotations

import ast

import pytest

from django_k8s_runtime import env
from tests.runtime.test_layers import RUNTIME

# ASGI's own keys (the specification's HTTP and WebSocket scopes): a layer reads them
# as they are. Anything else a layer writes or reads is the runtime's contract.
ASGI_KEYS = {
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "subprotocols",
    "extensions",
    "state",
}


def scope_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, key) for every string key read or written on a name ``scope``:
    ``scope["k"]``, ``scope.get("k")``, ``scope.setdefault("k")``, ``"k" in scope``."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and _is_scope(node.value):
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "setdefault", "pop")
            and _is_scope(node.func.value)
            and node.args
        ):
            key = node.args[0]
        elif isinstance(node, ast.Compare) and any(_is_scope(c) for c in node.comparators):
            key = node.left
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.append((node.lineno, key.value))
    return found


def _is_scope(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "scope") or (
        isinstance(node, ast.Attribute) and node.attr == "scope"
    )


def test_the_layers_share_scope_keys_only_by_their_names_in_asgi_types() -> None:
    literal = [
        f"{path.relative_to(RUNTIME)}:{line}: scope[{key!r}]"
        for path in RUNTIME.rglob("*.py")
        if path.name != "asgi_types.py"
        for line, key in scope_keys(ast.parse(path.read_text()))
        if key not in ASGI_KEYS
    ]
    assert literal == [], "name the key in asgi_types.py and use the name"


def test_the_scan_finds_a_literal_key() -> None:
    """The check above can fail."""
    code = 'scope["route"] = 1\nscope.get("deadline")\n"client_gone" in self.scope\n'
    assert [key for _, key in scope_keys(ast.parse(code))] == [
        "route",
        "deadline",
        "client_gone",
    ]


def module_imports() -> dict[str, set[str]]:
    """Every module of the runtime and the runtime's modules it imports, at module
    level or inside a function (a circle is one either way)."""
    modules = {
        ".".join(
            ("django_k8s_runtime", *path.relative_to(RUNTIME).with_suffix("").parts)
        ).removesuffix(".__init__"): path
        for path in RUNTIME.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                    ).strip(".")
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            edges |= {name for name in names if name in modules and name != module}
        graph[module] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            found.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return found


def test_the_runtime_has_no_import_circle() -> None:
    graph = module_imports()
    # A package's __init__ importing its modules is no circle of theirs.
    for module in graph:
        graph[module] = {m for m in graph[module] if not module.startswith(m + ".")}
    assert circles(graph) == []


def test_the_circle_check_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_a_variable_declared_twice_is_refused() -> None:
    declared = env.REGISTRY["GUNICORN_TIMEOUT"]
    with pytest.raises(ValueError, match="GUNICORN_TIMEOUT is declared twice"):
        env.declare("GUNICORN_TIMEOUT", "60", declared.parser, "again", env.OPERATIONS)
    assert env.REGISTRY["GUNICORN_TIMEOUT"] is declared
    # The very same declaration again (its module imported twice) is no second one.
    again = env.declare(
        declared.name, declared.default, declared.parser, declared.help, declared.section
    )
    assert again == declared
