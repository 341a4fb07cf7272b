"""The image, built once per session from the real Dockerfile (scripts/image build),
and a PostgreSQL of the tests' own, migrated by the image itself.

What the tests measure (image size, start-up time, how signals stop it) is
printed at the end of the run, whatever pytest's output options.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from harness.postgres import PostgresCluster, server_binaries
from tests.project.image.container import IMAGE, podman, run_once
from tests.support.requirements import require, require_tool
from tests.support.server import ROOT, TEST_SECRET_KEY

FIGURES = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> dict[str, str]:
    """Name -> measured value, for the summary at the end of the run."""
    return pytestconfig.stash.setdefault(FIGURES, {})


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, {})
    if figures:
        terminalreporter.section("container image figures")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def image(figures: dict[str, str]) -> str:
    require_tool("podman", "runc")
    started = time.monotonic()
    # podman, even where docker is also installed: the tests run the image with it.
    result = subprocess.run(
        [str(ROOT / "scripts" / "image"), "build"],
        env={**os.environ, "IMAGE_ENGINE": "podman", "IMAGE_TAG": IMAGE},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-6000:]
        pytest.fail(f"scripts/image build exited with {result.returncode}:\n{output}")
    figures["scripts/image build"] = f"{time.monotonic() - started:.1f} s"
    # Whether the base was found (pulled or built before) or its stand-in built now.
    for line in result.stderr.splitlines():
        if line.startswith("scripts/image: base: "):
            figures["base image"] = line.removeprefix("scripts/image: base: ")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    figures["image size"] = f"{size / 1e6:.0f} MB (uncompressed, as podman reports it)"
    return IMAGE


@pytest.fixture(scope="session")
def database_url(image: str) -> Iterator[str]:
    require(
        server_binaries() is not None,
        "PostgreSQL server binaries are missing (make system-packages installs them)",
    )
    with PostgresCluster() as cluster:
        url = cluster.url()
        result = run_once(
            "python", "manage.py", "migrate", "--noinput",
            environ={"DJANGO_SECRET_KEY": TEST_SECRET_KEY, "DATABASE_URL": url},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        yield url
