"""What the package ships (everything under runtime/src: the wheel's files) names no
path of this repository: its docstrings, comments, help texts and messages are read
where the repository is not (an installed wheel, a PyPI page, an operator's terminal),
so they name the documentation's pages by their titles, never by their files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.source import ROOT

SHIPPED = ROOT / "runtime" / "src"
REPOSITORY_PATH = re.compile(
    r"(?<![\w./-])(?:(?:tests|docs|bench|harness|scripts|deploy|config|example)/[\w.-]"
    r"|(?:PROJECT|CONSTITUTION|README)\.md)"
)


def shipped_files() -> list[Path]:
    return sorted(
        path
        for path in SHIPPED.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def repository_paths(text: str) -> list[str]:
    return [match.group(0) for match in REPOSITORY_PATH.finditer(text)]


@pytest.mark.parametrize("path", shipped_files(), ids=lambda path: str(path.relative_to(SHIPPED)))
def test_a_shipped_file_names_no_path_of_this_repository(path: Path) -> None:
    lines = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if repository_paths(line)
    ]
    assert lines == [], "name the documentation's page (its title), not a file of the repository"


def test_the_check_sees_a_path_and_lets_a_title_be() -> None:
    assert repository_paths("(tests/runtime/test_database.py checks it)") == ["tests/r"]
    assert repository_paths("see docs/serving.md, or PROJECT.md") == ["docs/s", "PROJECT.md"]
    assert repository_paths("(CONSTITUTION.md, rule 1) config/settings.py") == [
        "CONSTITUTION.md",
        "config/s",
    ]
    assert repository_paths("the documentation's Serving page; my_docs/x; a/tests/b") == []
