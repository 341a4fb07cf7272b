"""The layering docs/architecture.md describes, checked.

* Inside the runtime, server/, health/ and observability/ import none of each
  other and nothing else of the runtime but one leaf, ``asgi_types`` (ASGI's
  shapes and the small response), which imports nothing of the runtime: the
  composition root (asgi.py) hands each layer what it needs.
* Nothing in the runtime imports this repository's service (config/, example/), nor
  its tests, benchmarks or harness.
* Each public module (django_k8s_runtime.PUBLIC_MODULES) defines what its ``__all__``
  declares.
* The runtime's tests, their site and their support (tests/runtime/, tests/site/,
  tests/support/) name nothing of the service, in an import or in a string (a settings
  module, an application, a readiness check): they run without it
  (tests/runtime/conftest.py makes it unimportable while they do).

The service's own use of the runtime is tests/project/test_layers.py's.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from django_k8s_runtime import PUBLIC_MODULES
from tests.support.source import ROOT, RUNTIME, defined_names, imports, public_names

SERVICE = ("config", "example")
RUNTIMES_TESTS = ("tests/runtime", "tests/site", "tests/support")
LAYERS = ("server", "health", "observability")
LEAF = "django_k8s_runtime.asgi_types"  # what every layer may import


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


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_a_public_module_declares_its_surface_by_name(module: str) -> None:
    missing = public_names(module) - defined_names(module)
    assert missing == set(), f"{module}.__all__ names what it does not define"


def service_modules(root: Path = ROOT) -> set[str]:
    """The service's modules by their dotted names (``config.settings``...), from its files."""
    found = set()
    for package in SERVICE:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def names_of_the_service(directory: Path, root: Path = ROOT) -> set[tuple[str, str]]:
    """(file, name) for every import of the service in ``directory``, and every string
    that names one of its modules (``"config.asgi:application"``,
    ``"HEALTH_CHECKS": "example.checks:upstream"``)."""
    modules = service_modules(root)
    found = {
        (path, name) for path, name in imports(directory, root) if name.split(".")[0] in SERVICE
    }
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in re.findall(r"(?<![\w.])(?:config|example)(?:\.\w+)+", node.value):
                    if any(name == m or name.startswith(m + ".") for m in modules if "." in m):
                        found.add((str(path.relative_to(root)), name))
    return found


@pytest.mark.parametrize("directory", RUNTIMES_TESTS)
def test_the_runtimes_tests_name_nothing_of_the_service(directory: str) -> None:
    this_file = str(Path(__file__).relative_to(ROOT))  # names them, to test the check
    found = {(path, name) for path, name in names_of_the_service(ROOT / directory)}
    assert {(path, name) for path, name in found if path != this_file} == set(), (
        "the runtime's tests run on tests/site/; the service's are tests/project/'s"
    )


def test_the_checks_can_see_an_import() -> None:
    handler = "runtime/src/django_k8s_runtime/server/handler.py"
    assert (handler, "django_k8s_runtime.server.threads") in imports(RUNTIME / "server")
    assert (handler, LEAF) in imports(RUNTIME / "server")


def test_the_check_sees_the_service_in_an_import_and_in_a_string(tmp_path: Path) -> None:
    for package, modules in {"config": ("settings", "asgi"), "example": ("checks",)}.items():
        (tmp_path / package).mkdir()
        for module in ("__init__", *modules):
            (tmp_path / package / f"{module}.py").write_text("")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_imports.py").write_text(
        "import config.asgi\nfrom example import checks\nfrom tests.site import views\n"
    )
    (tests / "test_names.py").write_text(
        "ENVIRON = {'DJANGO_SETTINGS_MODULE': 'config.settings',\n"
        "           'HEALTH_CHECKS': 'database,example.checks:upstream'}\n"
        "HOSTS = ['example.com', 'shop.example.com', 'config.example.com']\n"
    )
    assert names_of_the_service(tests, tmp_path) == {
        ("tests/test_imports.py", "config.asgi"),
        ("tests/test_imports.py", "example"),
        ("tests/test_imports.py", "example.checks"),
        ("tests/test_names.py", "config.settings"),
        ("tests/test_names.py", "example.checks"),
    }


def test_this_service_is_not_importable_while_the_runtimes_tests_run() -> None:
    """tests/runtime/conftest.py hides config/ and example/ from this process and from
    every process its tests start: what passes here passes without the service."""
    import subprocess
    import sys

    for package in SERVICE:
        with pytest.raises(ModuleNotFoundError, match="without this repository's service"):
            __import__(f"{package}.settings" if package == "config" else package)
        started = subprocess.run(
            [sys.executable, "-c", f"import {package}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert started.returncode == 1, started.stderr
        assert "without this repository's service" in started.stderr
