"""A project's own readiness checks (HEALTH_CHECKS=package.module:callable): loaded at
start-up, run like the built-in ones (time bound, cache, single flight, one log line
per change), a synchronous one in a thread and never piled up while it hangs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import pytest

from django_k8s_runtime import env
from django_k8s_runtime.health.checks import (
    CannotLoadCheck,
    CannotLoadChecks,
    Check,
    configured_checks,
    load_callable,
    project_probe,
)
from django_k8s_runtime.server.threads import ThreadPool
from tests.support.asgi import run
from tests.support.server import GUNICORN_COMMAND, Server
from tests.support.server import run as run_command

PROBE = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def in_daemon_threads():
    """What the worker hands the checks: a pool of daemon threads, so a check that
    never returns keeps no process alive (Python's default executor would)."""
    pool = ThreadPool(None, "checks")
    return lambda function: pool.run(function)


def check(function, *, timeout: float = 1, cache_seconds: float = 0) -> Check:
    probe = project_probe(function, in_daemon_threads())
    return Check("project", probe, timeout=timeout, cache_seconds=cache_seconds)


# Loading -----------------------------------------------------------------------------


def test_an_entry_names_a_callable_in_an_importable_module() -> None:
    from tests.site import checks

    assert load_callable("tests.site.checks:down") is checks.down
    assert load_callable("tests.site.checks:Checks.nested") is checks.Checks.nested


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("tests.no_such_module:check", "its module cannot be imported: ModuleNotFoundError"),
        ("tests.site.checks:missing", "tests.site.checks has no missing"),
        ("tests.site.checks:not_a_function", "not_a_function is a int, not a callable"),
    ],
)
def test_an_entry_that_names_no_callable_says_why(entry: str, why: str) -> None:
    with pytest.raises(CannotLoadCheck) as raised:
        load_callable(entry)
    assert str(raised.value).startswith(why)


def test_every_bad_entry_is_one_line_and_the_good_ones_are_named_as_written() -> None:
    with pytest.raises(CannotLoadChecks) as raised:
        configured_checks(
            ("tests.site.checks:missing", "tests.site.checks:down", "tests.nope:check"),
            timeout=0.5,
            cache_seconds=1,
        )
    assert raised.value.lines == [
        "HEALTH_CHECKS entry 'tests.site.checks:missing' is not valid: "
        "tests.site.checks has no missing.",
        "HEALTH_CHECKS entry 'tests.nope:check' is not valid: its module cannot be imported: "
        "ModuleNotFoundError: No module named 'tests.nope'.",
    ]
    checks = configured_checks(("database", "tests.site.checks:down"), timeout=0.5, cache_seconds=1)
    assert [c.name for c in checks] == ["database:default", "tests.site.checks:down"]


@pytest.mark.parametrize(
    "text", ["database, tests.site.checks:down", "tests.site.checks:Checks.nested", "DATABASE", ""]
)
def test_health_checks_accepts_callable_references(text: str) -> None:
    env.load({"HEALTH_CHECKS": text})["HEALTH_CHECKS"]


@pytest.mark.parametrize(
    "text",
    [
        "redis",
        "tests.site.checks",
        "tests.site.checks:",
        ":down",
        "a:b:c",
        "x-y:z",
        "database,DATABASE",
    ],
)
def test_health_checks_refuses_what_names_no_callable(text: str) -> None:
    with pytest.raises(env.ConfigError, match=r"package\.module:callable"):
        env.load({"HEALTH_CHECKS": text})["HEALTH_CHECKS"]


# Running -----------------------------------------------------------------------------


def test_a_synchronous_check_runs_in_a_thread_and_fails_by_raising_or_returning_false(
    caplog,
) -> None:
    where: list[str] = []
    state = {"answer": None}

    def dependency():
        where.append(threading.current_thread().name)
        if state["answer"] == "raise":
            raise ConnectionError("broker at 10.0.0.9:6379 refused")
        return state["answer"]

    probe = check(dependency)

    async def scenario():
        results = [await probe.run()]
        state["answer"] = False
        results.append(await probe.run())
        state["answer"] = "raise"
        results.append(await probe.run())
        state["answer"] = True
        results.append(await probe.run())
        return [result.ok for result in results]

    with caplog.at_level(logging.INFO, logger="django_k8s_runtime.health.checks"):
        assert run(scenario()) == [True, False, False, True]
    assert all(name.startswith("checks-") for name in where)  # never the event loop's
    assert [r.getMessage() for r in caplog.records] == [
        "readiness check project passes",
        "readiness check project fails: CheckFailed: returned False",
        "readiness check project passes",
    ]


def test_an_async_check_runs_on_the_event_loop() -> None:
    where = []

    async def dependency() -> bool:
        where.append(threading.current_thread() is threading.main_thread())
        return False

    assert run(check(dependency).run()).ok is False
    assert where == [True]


@pytest.mark.slow
def test_a_hanging_synchronous_check_is_answered_in_time_and_never_piles_up_threads() -> None:
    started, release = [], threading.Event()

    def dependency() -> None:
        started.append(1)
        release.wait(30)

    probe = check(dependency, timeout=0.2)

    async def scenario():
        timings, results = [], []
        for _ in range(12):  # a probe storm while the dependency hangs (no cache)
            begun = time.perf_counter()
            results.append(await probe.run())
            timings.append(time.perf_counter() - begun)
        threads_during_the_storm = len(started)
        release.set()
        await asyncio.sleep(0.1)
        return timings, results, threads_during_the_storm, await probe.run()

    timings, results, threads, recovered = run(scenario())
    assert not any(result.ok for result in results)
    assert max(timings) < 1
    assert threads == 1, "one thread for the hung check, not one per probe"
    assert recovered.ok


def test_a_hanging_async_check_is_cut_at_its_time_bound() -> None:
    async def dependency() -> None:
        await asyncio.sleep(30)

    async def scenario():
        begun = time.perf_counter()
        result = await check(dependency, timeout=0.2).run()
        return result, time.perf_counter() - begun

    result, elapsed = run(scenario())
    assert result.ok is False
    assert elapsed < 1


# With the real server --------------------------------------------------------------


def ready(server: Server) -> httpx.Response:
    return PROBE.get(server.url("/health"))


@pytest.mark.slow
def test_a_hanging_project_check_is_cut_at_the_check_timeout() -> None:
    environ = {
        "HEALTH_CHECKS": "tests.site.checks:hang,tests.site.checks:hang_async",
        "HEALTH_CHECK_TIMEOUT": "0.3",
        "HEALTH_CACHE_SECONDS": "0",
        "GUNICORN_WORKERS": "1",
    }
    with Server(environ) as server:
        timings = []
        for _ in range(5):
            begun = time.perf_counter()
            response = ready(server)
            timings.append(time.perf_counter() - begun)
            assert response.status_code == 503
            assert [c["ok"] for c in response.json()["checks"]] == [False, False]
        assert server.get("/_test/hello").status_code == 200
        log = server.log()
    print(f"\nhanging checks: /health 503 in {max(timings) * 1000:.0f} ms at most")
    assert max(timings) < 1.5
    assert "readiness check tests.site.checks:hang fails: no answer within 0.3s" in log


@pytest.mark.slow
def test_an_entry_that_names_no_callable_stops_the_start_in_one_line() -> None:
    result = run_command(
        GUNICORN_COMMAND,
        {"HEALTH_CHECKS": "database,tests.site.checks:missing", "GUNICORN_WORKERS": "1"},
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert (
        "configuration error: HEALTH_CHECKS entry 'tests.site.checks:missing' is not valid: "
        "tests.site.checks has no missing." in output
    )
    assert "Traceback" not in output


def _poll(server: Server, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = ready(server)
        if response.status_code == status:
            return response
        time.sleep(0.05)
    raise AssertionError(f"/health did not turn {status} within {within}s:\n{server.log()}")


def test_check_env_imports_the_entries_as_start_up_does() -> None:
    command = ["python", "-m", "django_k8s_runtime", "check-env"]
    bad = run_command(command, {"HEALTH_CHECKS": "database,tests.site.checks:missing"})
    assert bad.returncode == 1
    assert (
        "configuration error: HEALTH_CHECKS entry 'tests.site.checks:missing' is not valid: "
        "tests.site.checks has no missing." in bad.stdout
    )
    good = run_command(command, {"HEALTH_CHECKS": "database,tests.site.checks:down"})
    assert good.returncode == 0, good.stdout
    assert "configuration ok" in good.stdout


def test_the_documented_redis_check_follows_a_real_redis(tmp_path, monkeypatch, settings) -> None:
    """docs/probes.md's Redis check, as written there, against a Redis server of the test's own:
    ready while it answers, not ready within the check's bound once it is gone."""
    import re
    import sys
    from pathlib import Path

    from tests.support.redis import RedisServer
    from tests.support.requirements import require_tool

    require_tool("redis-server")
    page = (Path(__file__).resolve().parents[3] / "docs" / "probes.md").read_text()
    block = re.search(
        r"<!-- redis-check:start -->\n```python\n(.*?)```\n<!-- redis-check:end -->", page, re.S
    )
    assert block, "docs/probes.md's Redis check is between its markers"
    (tmp_path / "readme_checks.py").write_text(block.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    with RedisServer() as redis_server:
        settings.CELERY_BROKER_URL = redis_server.url
        sys.modules.pop("readme_checks", None)
        probe = check(load_callable("readme_checks:broker"), timeout=0.5)

        async def scenario() -> tuple[bool, bool, float]:
            up = (await probe.run()).ok
            redis_server.stop()
            begun = time.perf_counter()
            down = (await probe.run()).ok
            return up, down, time.perf_counter() - begun

        up, down, seconds = run(scenario())
    assert (up, down) == (True, False)
    assert seconds < 1
