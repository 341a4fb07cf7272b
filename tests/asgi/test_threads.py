"""The worker's thread pool and the admission of a request that finds every thread
busy (server/threads.py, server/handler.py), in-process with real threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from django_k8s_runtime.server.handler import REFUSED, admission
from django_k8s_runtime.server.threads import ThreadPool
from tests.asgi.support import run


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
