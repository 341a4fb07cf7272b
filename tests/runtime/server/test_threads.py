"""The worker's thread pool and the admission of a request that finds every thread
busy (server/threads.py, server/handler.py), in-process with real threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from django_k8s_runtime.server.admission import REFUSED, admission
from django_k8s_runtime.server.threads import ThreadPool
from tests.support.asgi import run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


class Deadline:
    def __init__(self, seconds_from_now: float) -> None:
        self.at = asyncio.get_running_loop().time() + seconds_from_now


def test_a_job_no_thread_has_taken_can_be_withdrawn() -> None:
    ran = []

    async def scenario():
        pool = ThreadPool(1, "test")
        release = threading.Event()
        busy = pool.submit(release.wait, 10)
        queued = pool.submit(ran.append, "queued")
        await asyncio.sleep(0.05)
        assert pool.busy == 1
        assert pool.waiting == 1
        assert not pool.has_idle_thread()
        assert pool.withdraw(queued) is True
        assert queued.future.cancelled()
        assert pool.waiting == 0
        release.set()
        await busy.future
        await asyncio.sleep(0.05)
        pool.shutdown()

    run(scenario())
    assert ran == []  # withdrawn: never run


def test_a_job_a_thread_has_taken_runs_to_its_end() -> None:
    async def scenario():
        pool = ThreadPool(1, "test")
        started = threading.Event()

        def work() -> str:
            started.set()
            time.sleep(0.1)
            return "done"

        job = pool.submit(work)
        await asyncio.to_thread(started.wait, 5)
        assert pool.withdraw(job) is False
        result = await job.future
        pool.shutdown()
        return result

    assert run(scenario()) == "done"


def test_the_pool_learns_how_long_a_job_takes() -> None:
    async def scenario():
        pool = ThreadPool(2, "test")
        for _ in range(30):
            await pool.run(time.sleep, 0.01)
        pool.shutdown()
        return pool.job_seconds

    assert 0.005 < run(scenario()) < 0.1


@pytest.mark.parametrize(
    ("waiting", "job_seconds", "deadline", "admitted"),
    [
        (0, 0.0, 30, True),  # nothing known yet: admitted, bounded by its share
        (10, 0.01, 30, True),  # a short wait for fast jobs
        (100, 0.2, 4, False),  # 100 × 0.2 s over 2 threads: 10 s, past half of 4 s
        (4, 0.2, 4, True),  # 0.5 s: well within
    ],
)
def test_admission_refuses_a_request_that_would_not_finish_in_time(
    waiting: int, job_seconds: float, deadline: float, admitted: bool
) -> None:
    async def scenario():
        pool = ThreadPool(2, "test")
        pool._waiting = waiting  # the queue as it stands
        pool.job_seconds = job_seconds
        return admission(pool, Deadline(deadline)), asyncio.get_running_loop().time()

    decision, now = run(scenario())
    if admitted:
        assert decision is not REFUSED
        assert now < decision <= now + deadline / 2 + 0.1  # waits at most half its time
    else:
        assert decision is REFUSED


def test_without_a_deadline_a_request_waits_as_long_as_it_takes() -> None:
    async def scenario():
        return admission(ThreadPool(1, "test"), None)

    assert run(scenario()) is None


def test_a_wait_for_a_thread_is_reported_only_for_a_job_that_found_none() -> None:
    waits: list[float] = []

    async def scenario():
        pool = ThreadPool(1, "test", on_wait=waits.append)
        await pool.run(time.sleep, 0.01)  # found the thread idle: no wait reported
        first = pool.submit(time.sleep, 0.2)
        second = pool.submit(time.sleep, 0)  # behind the first
        await asyncio.gather(first.future, second.future)
        release = threading.Event()
        busy = pool.submit(release.wait, 10)
        withdrawn = pool.submit(time.sleep, 0)
        await asyncio.sleep(0.1)
        assert pool.withdraw(withdrawn)  # refused after waiting: its wait counts too
        release.set()
        await busy.future
        pool.shutdown()

    run(scenario())
    assert len(waits) == 2
    assert 0.15 < waits[0] < 2
    assert 0.05 < waits[1] < 2


def test_a_failing_wait_report_never_takes_a_thread_down(caplog) -> None:
    def broken(seconds: float) -> None:
        raise RuntimeError("metrics broken")

    async def scenario():
        pool = ThreadPool(1, "test", on_wait=broken)
        jobs = [pool.submit(time.sleep, 0.05) for _ in range(3)]
        results = await asyncio.gather(*(job.future for job in jobs))
        pool.shutdown()
        return results

    assert run(scenario()) == [None, None, None]
    assert "could not record a wait for a thread" in caplog.text


def pool_threads(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"{name}-")]


async def threads_end(name: str, within: float = 5.0) -> bool:
    """Whether the pool's threads have all ended within ``within`` seconds."""
    deadline = time.monotonic() + within
    while pool_threads(name) and time.monotonic() < deadline:  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(0.02)
    return not pool_threads(name)


def test_an_unbounded_pool_gives_a_job_to_an_idle_thread_before_starting_one() -> None:
    async def scenario() -> list[str]:
        pool = ThreadPool(None, "claim")
        names = [await pool.run(lambda: threading.current_thread().name) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert pool_threads("claim") == ["claim-1"]
        pool.shutdown()
        return names

    assert run(scenario()) == ["claim-1"] * 5


def test_an_unbounded_pool_starts_a_thread_for_each_job_in_flight() -> None:
    async def scenario() -> None:
        pool = ThreadPool(None, "many")
        release = threading.Event()
        jobs = [pool.submit(release.wait, 10) for _ in range(4)]
        await asyncio.sleep(0.05)
        assert pool.busy == 4
        assert len(pool_threads("many")) == 4
        release.set()
        await asyncio.gather(*(job.future for job in jobs))
        pool.shutdown()

    run(scenario())


def test_idle_threads_of_an_unbounded_pool_end_after_a_while(monkeypatch) -> None:
    from django_k8s_runtime.server import threads

    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.05)

    async def scenario() -> None:
        pool = ThreadPool(None, "idle")
        release = threading.Event()
        jobs = [pool.submit(release.wait, 10) for _ in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*(job.future for job in jobs))
        assert await threads_end("idle"), pool_threads("idle")
        # and the pool still serves: a new job starts a new thread
        assert await pool.run(lambda: "again") == "again"
        pool.shutdown()

    run(scenario())


def test_a_job_whose_caller_gave_up_before_a_thread_took_it_never_runs() -> None:
    """The awaiting task cancelled (its client left, its deadline passed) while the job
    waited: the thread that comes free skips it and counts nothing."""
    ran = []

    async def scenario() -> None:
        pool = ThreadPool(1, "cancel")
        release = threading.Event()
        busy = pool.submit(release.wait, 10)
        waiter = asyncio.ensure_future(pool.run(ran.append, "cancelled"))
        await asyncio.sleep(0.05)
        waiter.cancel()
        release.set()
        await busy.future
        assert await pool.run(ran.append, "next") is None
        assert (pool.busy, pool.waiting) == (0, 0)
        pool.shutdown()

    run(scenario())
    assert ran == ["next"]


def test_shutdown_ends_idle_threads_and_lets_a_running_job_finish() -> None:
    async def scenario() -> str:
        pool = ThreadPool(2, "stop")
        started = threading.Event()

        def work() -> str:
            started.set()
            time.sleep(0.1)
            return "finished"

        job = pool.submit(work)
        await asyncio.to_thread(started.wait, 5)
        pool.shutdown()
        result = await job.future
        assert await threads_end("stop"), pool_threads("stop")
        return result

    assert run(scenario()) == "finished"
