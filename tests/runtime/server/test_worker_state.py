"""The worker's state, read by a stack built before the worker existed.

With GUNICORN_PRELOAD the stack is built in the master; each worker fills in
``this_worker`` only when it starts serving. These build the stack first and
fill the state in afterwards, as that order requires.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from django_k8s_runtime.health.probes import Probes
from django_k8s_runtime.server.timeout import RequestTimeout
from django_k8s_runtime.server.worker_state import WorkerState, this_worker
from tests.support.asgi import Client, client, hello, http_scope, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process


async def slow(scope, receive, send) -> None:
    await asyncio.sleep(0.3)
    await hello(scope, receive, send)


def status(app, path: str = "/") -> int:
    async def scenario():
        client_ = Client()
        await asyncio.create_task(app(http_scope(path), client_.receive, client_.send))
        return client_.status

    return run(scenario())


def test_a_stack_built_before_the_worker_serves_gets_the_workers_timeout() -> None:
    state = WorkerState(pod_draining=lambda: False)
    app = RequestTimeout(slow, seconds=state.request_timeout, grace=0.1)  # built first
    assert status(app) == 200  # no worker of ours yet: not bounded
    state.serving(request_timeout=0.05, threads=2, stopping=lambda: False)
    assert status(app) == 504
    assert state.threads() == 2


def test_draining_is_the_pods_drain_or_this_workers_own_exit() -> None:
    pod = {"draining": False}
    worker = {"stopping": False}
    state = WorkerState(pod_draining=lambda: pod["draining"])
    assert not state.is_draining()  # before the worker serves
    state.serving(request_timeout=30, threads=2, stopping=lambda: worker["stopping"])
    assert not state.is_draining()
    worker["stopping"] = True  # e.g. max-requests reached
    assert state.is_draining()
    worker["stopping"], pod["draining"] = False, True  # the master's SIGTERM
    assert state.is_draining()


def test_readiness_follows_the_workers_state_through_the_probes() -> None:
    stopping = {"now": False}
    state = WorkerState(pod_draining=lambda: False)
    probes = Probes(hello, [], draining=state.is_draining)
    state.serving(request_timeout=30, threads=2, stopping=lambda: stopping["now"])

    async def readiness() -> int:
        async with client(probes) as http:
            return (await http.get("/health")).status_code

    assert run(readiness()) == 200
    stopping["now"] = True
    assert run(readiness()) == 503


def test_this_process_has_no_worker_of_ours() -> None:
    """pytest is no Gunicorn worker: nothing bounds its requests, nothing drains."""
    assert this_worker.request_timeout() is None
    assert this_worker.threads() is None
    assert not this_worker.is_draining()


def test_periodic_work_runs_on_the_workers_loop_once_it_serves(caplog) -> None:
    """At once, then every period; a failure is one log line and the timer goes on."""
    state = WorkerState(pod_draining=lambda: False)
    calls: list[float] = []

    def tick() -> None:
        calls.append(time.monotonic())
        if len(calls) in (2, 3):
            raise RuntimeError("broken for a while")

    state.every(0.05, tick)

    async def scenario() -> None:
        await asyncio.sleep(0.1)
        assert calls == []  # registered before the worker serves: nothing yet
        state.serving(request_timeout=30, threads=2, stopping=lambda: False)
        assert len(calls) == 1
        # Past the two failures, the timer goes on (a generous bound: a collection
        # of the garbage collector may hold the loop a tenth of a second or more).
        deadline = time.monotonic() + 10
        while len(calls) < 5:
            assert time.monotonic() < deadline, calls
            await asyncio.sleep(0.01)

    run(scenario())
    periods = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert min(periods) >= 0.05 * 0.9, periods  # every period, never sooner
    assert caplog.text.count("a periodic task of the worker failed") == 1
    ran = len(calls)
    state.finished()  # the worker has served its last request: once more
    assert len(calls) == ran + 1
