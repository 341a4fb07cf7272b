"""README and docs/ link to each other by relative paths and headings: every such
link leads somewhere (the manual moved out of README once, and may move again). The
variables' tables are generated from the declarations, and README keeps the five
variables of the original request."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from django_k8s_runtime.env import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "runtime" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists() or (anchor and anchor not in anchors(target)):
            broken.append(link)
    assert broken == []


def test_the_link_check_sees_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A heading\n\n[there](#a-heading) [nowhere](#elsewhere)\n")
    assert "a-heading" in anchors(page)
    assert "elsewhere" not in anchors(page)


def code_lines(text: str) -> list[str]:
    """Lines of Python without their comments and indentation; not blank, not ``...``."""
    found = []
    for line in text.splitlines():
        code = line.split("  #", 1)[0].strip()
        if code and not code.startswith("#") and code != "...":
            found.append(code)
    return found


def test_the_architecture_quotes_the_composition_root_as_it_is() -> None:
    project = (ROOT / "docs" / "architecture.md").read_text()
    quoted = re.search(r"```python\n(# get_asgi_application\(\).*?)```", project, re.S)
    assert quoted, "docs/architecture.md's quotation of asgi.py"
    source = set(code_lines((ROOT / "runtime/src/django_k8s_runtime/asgi.py").read_text()))
    drifted = [line for line in code_lines(quoted.group(1)) if line not in source]
    assert drifted == [], "docs/architecture.md quotes lines asgi.py no longer has"


SEED_DEFAULTS = {
    "GUNICORN_WORKERS": "4",
    "GUNICORN_PORT": "8000",
    "GUNICORN_TIMEOUT": "30",
    "GUNICORN_MAX_REQUESTS": "0",
    "GUNICORN_MAX_REQUESTS_JITTER": "0",
}


def test_the_variables_reference_is_generated_from_the_declarations() -> None:
    """scripts/update-readme (`make docs`) writes the tables; --check finds a stale one."""
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "update-readme", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_names_the_requested_variables_with_their_declared_defaults() -> None:
    """README keeps the five variables of the original request, and their defaults."""
    readme = (ROOT / "README.md").read_text()
    shown = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", readme, re.MULTILINE))
    assert shown == {name: REGISTRY[name].default for name in SEED_DEFAULTS}
