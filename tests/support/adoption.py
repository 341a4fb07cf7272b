"""What the adoption tests share: the runtime's wheel, a fresh virtualenv at the
versions uv.lock pins, README's diffs, and a project's processes run with nothing
of this repository's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import django
import httpx

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
RUNTIME = ROOT / "runtime"
# The series this environment runs, and its group in the root pyproject (uv.lock).
SERIES_GROUP = "django-{}.{}".format(*django.VERSION[:2])


def adoption_diff(readme: Path, name: str = "adoption-diff") -> str:
    text = readme.read_text()
    block = text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->")[0]
    return block.strip().removeprefix("```diff").removesuffix("```").lstrip("\n")


def changed_lines(diff: str) -> list[str]:
    return [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()
    ]


def build_wheel(out: Path) -> tuple[Path, Path]:
    """The runtime's wheel and sdist, built as `uv build` builds them for a release."""
    run([str(UV), "build", "--quiet", "--package", "django-k8s-runtime", "--out-dir", out], ROOT)
    (wheel,) = out.glob("django_k8s_runtime-*.whl")
    (sdist,) = out.glob("django_k8s_runtime-*.tar.gz")
    return wheel, sdist


def locked_versions(out: Path, *groups: str) -> Path:
    """A constraints file: every package's version as uv.lock pins it for this
    series (and ``groups``)."""
    chosen = [option for group in (SERIES_GROUP, *groups) for option in ("--group", group)]
    run(
        [
            *(str(UV), "export", "--frozen", "--no-default-groups", *chosen),
            *("--no-emit-project", "--no-emit-workspace", "--no-hashes", "--no-header"),
            *("--quiet", "--output-file", out),
        ],
        ROOT,
    )
    return out


def install(venv: Path, constraints: Path, *requirements: str) -> Path:
    """A fresh virtualenv with ``requirements`` at the versions uv.lock pins."""
    run([str(UV), "venv", "--quiet", "--python", sys._base_executable, venv], venv.parent)
    run(
        [
            *(str(UV), "pip", "install", "--quiet", "--python", venv / "bin" / "python"),
            *("--constraint", constraints, *requirements),
        ],
        venv.parent,
    )
    return venv


def run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


def clean_environment(**variables: str) -> dict[str, str]:
    """Nothing of this repository's environment: no PYTHONPATH, no DJANGO_*."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**keep, "PYTHONUNBUFFERED": "1", **variables}


def wait_for(condition: Callable[[], bool], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {seconds}s:\n{log.read_text()}")
