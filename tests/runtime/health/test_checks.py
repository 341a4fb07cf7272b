"""The readiness check machinery: time bound, result cache, single flight, logging."""

from __future__ import annotations

import asyncio
import logging

import pytest

from django_k8s_runtime.health.checks import Check


def run(coroutine):
    return asyncio.run(coroutine)


def counting_probe(delay: float = 0.0, fail: bool = False):
    calls = []

    async def probe() -> None:
        calls.append(1)
        await asyncio.sleep(delay)
        if fail:
            raise ConnectionError("db.internal:5432 refused, password=hunter2")

    return probe, calls


def test_a_hanging_check_fails_within_its_time_bound() -> None:
    probe, _ = counting_probe(delay=30)
    check = Check("slow", probe, timeout=0.2, cache_seconds=0)

    async def scenario():
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await check.run()
        return result, loop.time() - started

    result, elapsed = run(scenario())
    assert result.ok is False
    assert elapsed < 0.5


def test_results_are_reused_within_the_cache_period() -> None:
    probe, calls = counting_probe()
    check = Check("db", probe, timeout=1, cache_seconds=60)

    async def scenario():
        return [await check.run() for _ in range(50)]

    assert all(result.ok for result in run(scenario()))
    assert len(calls) == 1


def test_concurrent_probes_share_one_check_in_flight() -> None:
    probe, calls = counting_probe(delay=0.1)
    check = Check("db", probe, timeout=1, cache_seconds=0)

    async def scenario():
        return await asyncio.gather(*(check.run() for _ in range(100)))

    assert all(result.ok for result in run(scenario()))
    assert len(calls) == 1


def test_failures_are_logged_once_per_change_with_the_reason(caplog) -> None:
    failing, _ = counting_probe(fail=True)
    check = Check("db", failing, timeout=1, cache_seconds=0)

    async def scenario():
        for _ in range(5):
            assert (await check.run()).ok is False

    with caplog.at_level(logging.INFO, logger="django_k8s_runtime.health.checks"):
        run(scenario())
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "readiness check db fails: ConnectionError: db.internal:5432 refused, password=hunter2"
    ]


@pytest.mark.parametrize("cache_seconds", [0, 0.05])
def test_a_recovered_dependency_is_seen_again(cache_seconds: float) -> None:
    state = {"fail": True}

    async def probe() -> None:
        if state["fail"]:
            raise ConnectionError("down")

    check = Check("db", probe, timeout=1, cache_seconds=cache_seconds)

    async def scenario():
        first = await check.run()
        state["fail"] = False
        await asyncio.sleep(cache_seconds + 0.01)
        return first, await check.run()

    first, second = run(scenario())
    assert (first.ok, second.ok) == (False, True)
