"""What the deploy tests share: the manifests rendered as `kubectl kustomize` renders a
project's overlay, and custom resources checked against their projects' published
schemas (schemas/validate.mjs, from the npm packages `make node-packages` installs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from tests.support.requirements import require, require_tool

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "deploy" / "kubernetes"
COMPONENTS = BASE / "components"
SCHEMAS = Path(__file__).with_name("schemas")


def render(overlay: Path, *components: str) -> list[dict]:
    """The base with these components (names under deploy/kubernetes/components/), as a
    kustomization in `overlay` that lists them renders it (kustomize refuses absolute
    paths: the overlay names them relatively)."""
    require_tool("kubectl")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(BASE, overlay)],
                "components": [os.path.relpath(COMPONENTS / name, overlay) for name in components],
            }
        )
    )
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    require(
        "components" not in result.stderr,
        f"this kubectl's kustomize has no components (kubectl 1.21+): {result.stderr[:200]}",
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_kind(documents: list[dict]) -> dict[str, dict]:
    """One object of each kind, by kind."""
    objects = {document["kind"]: document for document in documents}
    assert len(objects) == len(documents), "one object of each kind"
    return objects


def published_schema_errors(objects: list[dict]) -> dict[str, list[str]]:
    """Each object's problems, by `Kind/name`, against its project's published schema:
    the package's validator, its TypeScript declarations (no unknown field) and, for
    Gateway API, no field of the Experimental channel."""
    require_tool("node")
    require(
        (SCHEMAS / "node_modules" / ".package-lock.json").is_file(),
        f"the published schemas are not installed in {SCHEMAS.relative_to(ROOT)} "
        "(make node-packages)",
    )
    result = subprocess.run(
        ["node", str(SCHEMAS / "validate.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report) == len(objects)
    return {f"{entry['kind']}/{entry['name']}": entry["errors"] for entry in report}
