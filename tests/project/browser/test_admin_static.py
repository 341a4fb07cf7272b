"""The admin under `make run`, in a real headless Chromium (Debian's; no download).

Checks what a user would see: the login page renders with its stylesheet, which
WhiteNoise serves compressed-ready, with the right type and far-future caching,
and a user can log in (sessions and CSRF work in production mode).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.support.browser import chromium
from tests.support.server import ROOT, base_environment, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def make_run():
    port = free_port()
    environ = base_environment(GUNICORN_PORT=str(port), GUNICORN_HOST="127.0.0.1")
    for name in (
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "LOG_FORMAT",
        "GUNICORN_HOST",
    ):
        environ.pop(name)  # exactly what a new user has: nothing set
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=environ,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("make run did not become ready in 180 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl+C
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def test_admin_login_page_is_styled_by_its_css(make_run: str, browser) -> None:
    stylesheets = []
    page = browser.new_page()
    page.on(
        "response",
        lambda r: stylesheets.append(r) if r.request.resource_type == "stylesheet" else None,
    )
    response = page.goto(f"{make_run}/admin/login/", wait_until="load")
    assert response is not None
    assert response.status == 200
    assert page.title().startswith("Log in")
    header_color = page.eval_on_selector(
        "#header", "element => getComputedStyle(element).backgroundColor"
    )
    page.screenshot(path=str(ROOT / "build" / "admin-login.png"))
    page.close()

    assert stylesheets, "the login page loaded no stylesheet"
    for sheet in stylesheets:
        headers = sheet.headers
        assert sheet.status == 200, sheet.url
        assert headers["content-type"].startswith("text/css"), sheet.url
        # Hashed names from the manifest, cached for ever.
        assert "max-age=315360000" in headers["cache-control"], (sheet.url, headers)
        assert "immutable" in headers["cache-control"]
    # The admin's CSS really applied: its header is not a transparent default.
    assert header_color not in ("", "rgba(0, 0, 0, 0)"), header_color


def test_static_files_are_served_compressed(make_run: str) -> None:
    login = httpx.get(f"{make_run}/admin/login/").text
    css_path = login.split('href="', 1)[1].split('"', 1)[0]
    while not css_path.endswith(".css"):
        login = login.split(css_path, 1)[1]
        css_path = login.split('href="', 1)[1].split('"', 1)[0]
    for encoding in ("br", "gzip"):
        response = httpx.get(f"{make_run}{css_path}", headers={"accept-encoding": encoding})
        assert response.status_code == 200
        assert response.headers["content-encoding"] == encoding


def test_a_user_can_log_in_to_the_admin(make_run: str, browser) -> None:
    password = "browser-test-" + os.urandom(8).hex()
    create = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        "u, _ = U.objects.get_or_create(username='browser-admin'); "
        "u.is_staff = u.is_superuser = True; u.set_password(__import__('os').environ['PW']); "
        "u.save()"
    )
    environ = {
        **os.environ,
        "PW": password,
        "DJANGO_SECRET_KEY": (ROOT / ".secret_key").read_text().strip(),
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            create,
        ],
        cwd=ROOT,
        env=environ,
        check=True,
        timeout=120,
    )
    page = browser.new_page()
    page.goto(f"{make_run}/admin/login/")
    page.fill("#id_username", "browser-admin")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{make_run}/admin/")
    assert "Site administration" in page.title()
    assert page.locator("a[href='/admin/example/item/']").count() >= 1
    page.close()
