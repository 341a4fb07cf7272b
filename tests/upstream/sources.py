"""Upstream's own test suites, from the source distributions uv.lock pins.

Django and Uvicorn ship their tests in their sdists. The version is the one
installed in the environment running the tests (each cell of the Django series
matrix has its own); its sdist's address and sha256 come from ``uv.lock``, so
what is tested is exactly what the lockfile names, and the download is checked.
Sources are kept in ``.upstream/`` (git-ignored), unpacked once per version.

    python -m tests.upstream.sources django uvicorn   # fetch and print the paths
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".upstream"
TIMEOUT_SECONDS = 120


class NotAvailable(Exception):
    """The sources cannot be had here (no network to PyPI, no sdist in the lock)."""


def sdist(package: str) -> tuple[str, str]:
    """The address and sha256 of ``package``'s sdist at its installed version."""
    wanted = version(package)
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for entry in lock["package"]:
        if entry["name"] == package and entry["version"] == wanted:
            found = entry.get("sdist")
            if not found:
                raise NotAvailable(f"uv.lock has no sdist for {package} {wanted}")
            return found["url"], found["hash"].removeprefix("sha256:")
    raise NotAvailable(f"{package} {wanted} (installed) is not in uv.lock")


def tests_of(package: str) -> Path:
    """The unpacked sdist of ``package`` at its installed version (downloaded once)."""
    target = CACHE / f"{package}-{version(package)}"
    if (target / ".complete").exists():
        return target
    url, digest = sdist(package)
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        archive = Path(scratch) / url.rsplit("/", 1)[1]
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
                archive.write_bytes(answer.read())
        except OSError as error:
            raise NotAvailable(f"cannot download {url}: {error}") from None
        if hashlib.sha256(archive.read_bytes()).hexdigest() != digest:
            raise NotAvailable(f"{url} does not match uv.lock's sha256")
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        unpacked = next(path for path in Path(scratch).iterdir() if path.is_dir())
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    (target / ".complete").touch()
    return target


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(tests_of(name))
