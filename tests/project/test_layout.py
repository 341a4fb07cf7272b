"""docs/architecture.md's layout section matches the tree: every path it names exists, and
every file of the repository is named there, itself or by a folder that holds it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "runtime/src/django_k8s_runtime/"
# What needs no line of its own: the documents that describe the layout, tool
# settings, and packages' markers.
UNLISTED = {"README.md", "PROJECT.md", "CONSTITUTION.md", ".gitignore", ".python-version"}


def named_paths() -> set[str]:
    """The paths in the first column of the architecture's layout table (``…/`` is the
    package's folder)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in re.findall(r"^\| (.+?) \| ", section, re.MULTILINE):
        for path in re.findall(r"`([^`]+)`", row):
            names.add(path.replace("…/", RUNTIME).rstrip("/"))
    return names


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        path
        for path in listed
        if path not in UNLISTED
        and Path(path).name not in ("__init__.py", "conftest.py")
        and (ROOT / path).exists()  # not deleted in the work tree
    ]


def is_named(path: str, names: set[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[:end]) in names for end in range(1, len(parts) + 1))


def test_every_path_the_layout_names_exists() -> None:
    assert {name for name in named_paths() if not (ROOT / name).exists()} == set()


def test_every_file_is_in_the_layout() -> None:
    names = named_paths()
    unnamed = [path for path in tracked_files() if not is_named(path, names)]
    assert unnamed == [], "add them to docs/architecture.md's layout"


def test_the_layout_check_sees_a_module() -> None:
    assert is_named(RUNTIME + "server/handler.py", named_paths())
    assert not is_named(RUNTIME + "server/nothing.py", {RUNTIME + "server/handler.py"})
