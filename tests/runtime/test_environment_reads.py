"""No variable is read behind the registry's back (CONSTITUTION.md, rule 1).

Every form of access to the process environment in the service's own code is
found by walking the syntax tree: ``os.environ.get(...)``, ``os.environ[...]``,
``... in os.environ``, ``os.getenv(...)``, ``from os import environ``, and the
environment handed over whole. Only the registry (django_k8s_runtime/registry.py,
which reads what env.py and a project declare) may read it; every other access is
listed below with the reason it is not a configuration read.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CODE = ["config", "example", "manage.py", "runtime/src"]
RUNTIME = "runtime/src/django_k8s_runtime"
REGISTRY_MODULE = f"{RUNTIME}/registry.py"
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}

# (file, variable, how) -> why that access is not a configuration read.
JUSTIFIED = {
    ("config/asgi.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): "Django's own variable",
    ("config/wsgi.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): "Django's own variable",
    ("manage.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): "Django's own variable",
    (f"{RUNTIME}/gunicorn.py", "DJANGO_SETTINGS_MODULE", "reads"): (
        "Django's own variable: the master imports the settings module the workers will run"
    ),
    (f"{RUNTIME}/__main__.py", "DJANGO_SETTINGS_MODULE", "reads"): (
        "Django's own variable: check-env imports the project's settings, as start-up does"
    ),
    (f"{RUNTIME}/__main__.py", "DJANGO_SETTINGS_MODULE", "sets if unset"): (
        "Django's own variable: check-env sets Django up with --settings to import the "
        "readiness checks HEALTH_CHECKS names"
    ),
    (f"{RUNTIME}/settings.py", "DJANGO_SETTINGS_MODULE", "reads"): (
        "Django's own variable: which settings module's LOGGING is the final one, before "
        "Django is set up (the warning when it replaced runtime.logging()'s)"
    ),
    (f"{RUNTIME}/observability/multiprocess.py", "PROMETHEUS_MULTIPROC_DIR", "sets"): (
        "prometheus_client finds its multiprocess directory there"
    ),
    ("runtime/src/_django_k8s_runtime_preflight.py", "WEB_CONCURRENCY", "reads"): (
        "Gunicorn's own variable, which Gunicorn reads before any config module runs: "
        "checked only so that its mistake gets one line instead of a traceback"
    ),
    ("runtime/src/_django_k8s_runtime_preflight.py", "GUNICORN_CMD_ARGS", "reads"): (
        "Gunicorn parses it before any config module runs: checked (by the registry's "
        "declaration) only so that a mistake gets one line instead of Gunicorn's usage text"
    ),
    (f"{RUNTIME}/__main__.py", "WEB_CONCURRENCY", "reads"): (
        "Gunicorn's own variable, read by Gunicorn even when GUNICORN_WORKERS is set: "
        "check-env says what start-up would"
    ),
}


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


def service_files() -> list[Path]:
    files = []
    for entry in SERVICE_CODE:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [path for path in files if "migrations" not in path.parts]


def test_only_the_registry_reads_the_environment() -> None:
    unexplained = [
        str(access)
        for path in service_files()
        if str(path.relative_to(ROOT)) != REGISTRY_MODULE
        for access in environment_accesses(path)
        if access.key not in JUSTIFIED
    ]
    assert unexplained == [], "read through the registry (or justify it here)"


def test_every_justified_exception_is_still_there() -> None:
    """A stale exception would quietly allow a future read."""
    seen = {access.key for path in service_files() for access in environment_accesses(path)}
    assert set(JUSTIFIED) <= seen, set(JUSTIFIED) - seen


@pytest.mark.parametrize(
    ("source", "variable", "how"),
    [
        ("os.environ.get('SECRET')", "SECRET", "reads"),
        ("os.environ['SECRET']", "SECRET", "reads"),
        ("x = 'SECRET' in os.environ", "SECRET", "reads"),
        ("os.getenv('SECRET', '')", "SECRET", "reads"),
        ("os.environ.setdefault('SECRET', '1')", "SECRET", "sets if unset"),
        ("KEY = 'SECRET'\nos.environ[KEY] = '1'", "SECRET", "sets"),
        ("del os.environ['SECRET']", "SECRET", "removes"),
        ("dict(os.environ)", None, "reads"),
        ("from os import environ", None, "reads"),
        ("from os import getenv", None, "reads"),
    ],
)
def test_every_form_of_access_is_found(tmp_path: Path, source: str, variable, how) -> None:
    path = tmp_path / "sample.py"
    path.write_text("import os\n" + source + "\n")
    (access,) = environment_accesses(path, root=tmp_path)
    assert (access.variable, access.how) == (variable, how)
