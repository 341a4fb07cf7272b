"""A real project from PyPI adopted by README's instructions: Wagtail's own project
template (``wagtail start``), with split settings (``base.py``, ``dev.py``,
``production.py``) and no ``asgi.py``, in a fresh virtualenv holding the runtime's
wheel and Wagtail at the versions uv.lock pins for this Django series (the root
pyproject's ``wagtail`` group); README's Wagtail diff applied, served by the
production command. In its admin, in Chromium (its uploader and page editor are
JavaScript), an image of several MB is uploaded and a page is published; the page
is then served over HTTP.

The test adds only what the project's production needs anyway and Wagtail's
``production.py`` leaves to the project: a secret key, its host names and
WhiteNoise for the admin's static files. The page published has the slug
``health``, so the probes are moved as README says (``HEALTH_PATH``,
``HEALTH_LIVE_PATH``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.processes import free_port
from tests.support.adoption import (
    ROOT,
    UV,
    adoption_diff,
    build_wheel,
    changed_lines,
    clean_environment,
    install,
    locked_versions,
    run,
    wait_for,
)
from tests.support.browser import chromium
from tests.support.requirements import require

pytestmark = [
    pytest.mark.slow,
    pytest.mark.series,
    pytest.mark.per_series,
    pytest.mark.browser,
    pytest.mark.timeout(900),
]

WAGTAIL_DIFF = "adoption-wagtail-diff"
ADMIN = {"username": "editor", "password": "a-wagtail-adoption-password"}
PROBES = {"HEALTH_PATH": "/readyz", "HEALTH_LIVE_PATH": "/livez"}  # README's example
PAGE_TITLE = "Health"  # Wagtail makes its slug, health, from the title
IMAGE_PIXELS = (1500, 1400)  # random noise: a PNG of about 6 MB, under Wagtail's 10 MB

PRODUCTION = """

# Added by the test, not by the adoption: what this project's production needs anyway
# and Wagtail's production settings leave to it.
SECRET_KEY = "wagtail-adoption-test-" + "s3cr3t-" * 6
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
"""


@pytest.fixture(scope="module")
def adopted(tmp_path_factory) -> dict:
    require(UV.exists(), f"{UV} is missing (make venv installs it)")
    work = tmp_path_factory.mktemp("wagtail")
    wheel, _ = build_wheel(work / "dist")
    constraints = locked_versions(work / "constraints.txt", "wagtail")
    venv = install(work / "venv", constraints, str(wheel), "wagtail", "whitenoise")
    project = work / "project"
    project.mkdir()
    run([venv / "bin" / "wagtail", "start", "mysite", "."], project)
    template = sorted(str(path.relative_to(project)) for path in project.rglob("*.py"))
    diff = adoption_diff(ROOT / "README.md", WAGTAIL_DIFF)
    (work / "wagtail.diff").write_text(diff)
    run(["git", "apply", "-p1", str(work / "wagtail.diff")], project)
    with (project / "mysite" / "settings" / "production.py").open("a") as production:
        production.write(PRODUCTION)
    environ = clean_environment(DJANGO_SETTINGS_MODULE="mysite.settings.production")
    manage = [venv / "bin" / "python", "manage.py"]
    run([*manage, "migrate", "--noinput"], project, environ)
    run([*manage, "collectstatic", "--noinput", "-v0"], project, environ)
    superuser = {
        "DJANGO_SUPERUSER_USERNAME": ADMIN["username"],
        "DJANGO_SUPERUSER_PASSWORD": ADMIN["password"],
        "DJANGO_SUPERUSER_EMAIL": "editor@example.com",
    }
    run([*manage, "createsuperuser", "--noinput"], project, {**environ, **superuser})
    return {
        "venv": venv,
        "project": project,
        "diff": diff,
        "template": template,
        "constraints": constraints,
        "environ": environ,
    }


def test_the_template_is_adopted_as_readme_says(adopted: dict) -> None:
    """Wagtail's template has split settings and no asgi.py: the diff writes one and
    puts the runtime's lines in base.py; the runtime's README carries the same."""
    assert "mysite/asgi.py" not in adopted["template"]
    assert {"mysite/settings/base.py", "mysite/settings/production.py"} <= set(adopted["template"])
    assert adoption_diff(ROOT / "runtime" / "README.md", WAGTAIL_DIFF) == adopted["diff"]
    changed_files = [line[4:] for line in adopted["diff"].splitlines() if line.startswith("--- ")]
    assert changed_files == ["a/manage.py", "/dev/null", "a/mysite/settings/base.py"]
    removed = [line for line in changed_lines(adopted["diff"]) if line.startswith("-")]
    assert removed == ["-        from django.core.management import execute_from_command_line"]


def test_every_package_is_at_the_version_uv_lock_pins(adopted: dict) -> None:
    pinned = {
        line.split("==")[0].lower(): line.split("==")[1].split(";")[0].strip()
        for line in adopted["constraints"].read_text().splitlines()
        if "==" in line
    }
    frozen = run(
        [UV, "pip", "freeze", "--python", adopted["venv"] / "bin" / "python"], adopted["project"]
    ).stdout.splitlines()
    installed = dict(line.lower().split("==") for line in frozen if "==" in line)
    assert "wagtail" in installed
    assert {
        name: version for name, version in installed.items() if pinned.get(name) != version
    } == {}


def test_check_env_passes_with_the_production_settings(adopted: dict) -> None:
    result = subprocess.run(
        [adopted["venv"] / "bin" / "python", "-m", "django_k8s_runtime", "check-env"],
        cwd=adopted["project"],
        env={**adopted["environ"], **PROBES},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration warning" not in result.stdout  # LOGGING is still the runtime's
    assert re.search(r"^REQUEST_MAX_BODY_SIZE +33554432 \(32 MiB\) +default$", result.stdout, re.M)
    assert result.stdout.rstrip().endswith("configuration ok")


@contextlib.contextmanager
def serving(adopted: dict) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """The production command, as README gives it: its base URL, the master and the
    log (JSON lines)."""
    port = free_port()
    environ = clean_environment(
        GUNICORN_HOST="127.0.0.1",
        GUNICORN_PORT=str(port),
        GUNICORN_WORKERS="1",
        GUNICORN_SHUTDOWN_DELAY="0",
        METRICS_PORT="0",
        LOG_FORMAT="json",
        **PROBES,
    )
    command = [
        adopted["venv"] / "bin" / "gunicorn",
        "-c",
        "python:django_k8s_runtime.gunicorn",
        "mysite.asgi:application",
    ]
    log = adopted["project"] / f"server-{port}.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=adopted["project"],
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/livez", timeout=1).status_code == 200, log)
        yield base, server, log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def noise_image(adopted: dict, path: Path) -> bytes:
    """A PNG of random pixels (it does not compress), made by the project's Pillow."""
    width, height = IMAGE_PIXELS
    make = (
        "import os, sys; from PIL import Image; "
        f"Image.frombytes('RGB', ({width}, {height}), os.urandom({width * height * 3}))"
        ".save(sys.argv[1])"
    )
    run([adopted["venv"] / "bin" / "python", "-c", make, path], path.parent)
    return path.read_bytes()


def test_an_image_is_uploaded_and_a_page_published_in_the_admin(
    adopted: dict, tmp_path: Path
) -> None:
    image = noise_image(adopted, tmp_path / "harbour.png")
    assert 4_000_000 < len(image) < 10 * 1024 * 1024  # over the old limit, under Wagtail's
    from playwright.sync_api import expect

    with serving(adopted) as (base, server, log), chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", ADMIN["username"])
        page.fill("#id_password", ADMIN["password"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/admin/")

        # Wagtail's uploader: the file is posted by its JavaScript, with the CSRF token.
        page.goto(f"{base}/admin/images/multiple/add/")
        page.set_input_files("#fileupload", str(tmp_path / "harbour.png"))
        uploaded = page.locator("#upload-list li.upload-complete")
        uploaded.wait_for(timeout=60_000)
        assert "upload-success" in (uploaded.get_attribute("class") or ""), uploaded.inner_text()

        # A page under the home page, published: its slug is the probe's old path.
        page.goto(f"{base}/admin/pages/")
        home = page.locator("a[href$='/edit/']", has_text="Home").first.get_attribute("href")
        home_id = re.search(r"/admin/pages/(\d+)/edit/", home or "")[1]
        page.goto(f"{base}/admin/pages/add/home/homepage/{home_id}/")
        title = page.locator("#id_title")
        title.fill(PAGE_TITLE)
        title.blur()  # Wagtail's script makes the slug from the title when it is left
        expect(page.locator("#id_slug")).to_have_value("health")
        page.get_by_role("button", name="More actions").click()
        with page.expect_navigation():
            page.get_by_role("button", name="Publish").click()
        assert re.search(rf"/admin/pages/{home_id}/$", page.url), page.url
        message = page.locator(".messages").inner_text()
        assert f"'{PAGE_TITLE}'" in message, message
        assert "published" in message, message
        page.close()

        served = httpx.get(f"{base}/health/")
        ready = httpx.get(f"{base}/readyz")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0

    assert served.status_code == 200
    assert re.search(rf"<title>\s*{PAGE_TITLE}", served.text), served.text[:500]
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    originals = list((adopted["project"] / "media" / "original_images").iterdir())
    assert [hashlib.sha256(path.read_bytes()).digest() for path in originals] == [
        hashlib.sha256(image).digest()
    ]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    access = [
        (line["method"], line["path"], line["status"])
        for line in lines
        if line["logger"] == "django_k8s_runtime.access"
    ]
    assert ("POST", "/admin/images/multiple/add/", 200) in access
    assert ("GET", "/health/", 200) in access  # a page, not a probe: logged
    assert not [path for _, path, _ in access if path in ("/readyz", "/livez")]  # probes: quiet
    assert not [line for line in lines if line["level"] in ("WARNING", "ERROR")], lines
