"""This service uses the runtime only through its public modules, as any project would
(django_k8s_runtime.PUBLIC_MODULES), and of each only the names its ``__all__``
declares (CONSTITUTION.md, rule 11). The runtime's own layering is
tests/runtime/test_layers.py's.
"""

from __future__ import annotations

import pytest

from django_k8s_runtime import PUBLIC_MODULES
from tests.support.source import ROOT, imports, names_used, public_names


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
