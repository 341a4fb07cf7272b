"""Recycling by memory (WORKER_MAX_MEMORY_MIB), with real servers and real growth."""

from __future__ import annotations

import concurrent.futures
import mmap
import time

import pytest

from django_k8s_runtime import env, validation
from django_k8s_runtime.server import memory
from harness import wrk
from tests.support.haproxy import HAProxy
from tests.support.metrics import sample, scrape_until
from tests.support.requirements import require_tool
from tests.support.server import Server, free_port

HTTPS = {"x-forwarded-proto": "https"}


def test_resident_memory_is_read_from_the_system() -> None:
    """32 MiB of fresh pages, written so they are resident. Mapped here rather than
    allocated: malloc may hand back pages this long-running process freed and still
    holds, which would not grow its RSS."""
    before = memory.resident_bytes()
    kept = mmap.mmap(-1, 32 * memory.MIB)
    kept.write(b"\x01" * len(kept))
    try:
        assert memory.resident_bytes() - before > 24 * memory.MIB
    finally:
        kept.close()


@pytest.mark.parametrize("value", ["1", "63", "-5", "lots", "1.5"])
def test_a_limit_below_a_workers_own_size_is_refused(value: str) -> None:
    with pytest.raises(env.ConfigError, match=r"WORKER_MAX_MEMORY_MIB=.* 0 \(off\), or"):
        env.load({"WORKER_MAX_MEMORY_MIB": value})["WORKER_MAX_MEMORY_MIB"]


def test_a_limit_close_to_a_fresh_workers_size_is_warned_about() -> None:
    snapshot = env.load({"WORKER_MAX_MEMORY_MIB": "100"})
    lines = validation.warnings(
        snapshot, timeout=30, graceful_timeout=30, threads=5, fresh_worker_bytes=90 * memory.MIB
    )
    assert any(line.startswith("WORKER_MAX_MEMORY_MIB=100 leaves a worker") for line in lines)
    roomy = validation.warnings(
        snapshot, timeout=30, graceful_timeout=30, threads=5, fresh_worker_bytes=50 * memory.MIB
    )
    assert not any("WORKER_MAX_MEMORY_MIB" in line for line in roomy)


@pytest.mark.slow
def test_a_worker_past_its_memory_limit_is_replaced_under_load_losing_no_request() -> None:
    """Every request keeps 64 KiB (a leak): each worker passes its limit within
    seconds, finishes what it holds and is replaced, while a balancer that never
    retries sends a steady stream. No request fails; the master counts each exit as
    ``memory``."""
    require_tool("haproxy", "wrk")
    port, metrics_port = free_port(), free_port()
    fresh = _fresh_worker_mib()
    environ = {
        "GUNICORN_PORT": str(port),
        "GUNICORN_WORKERS": "2",
        "METRICS_PORT": str(metrics_port),
        "HEALTH_CHECKS": "",
        "GUNICORN_GRACEFUL_TIMEOUT": "10",
        "WORKER_MAX_MEMORY_MIB": str(fresh + 40),
    }
    with Server(environ) as server, HAProxy([port]) as balancer:
        result = wrk.run(
            balancer.url("/_test/grow?kib=64"), connections=8, seconds=10, headers=HTTPS
        )
        log = server.log()
        recycled = log.count("Worker over its memory limit")
        # Replacements start while the old workers drain: wait for those to exit.
        text = scrape_until(
            metrics_port,
            lambda text: (
                sample(text, "gunicorn_worker_restarts_total", cause="memory") >= recycled - 1
            ),
            seconds=15,
        )
    print(
        f"\n{result.requests} requests, {result.errors} failed, {recycled} workers recycled "
        f"past {fresh + 40} MiB"
    )
    assert result.errors == 0, result.output
    assert recycled >= 2, log
    assert sample(text, "gunicorn_worker_restarts_total", cause="memory") >= recycled - 1
    assert sample(text, "gunicorn_worker_restarts_total", cause="crash") == 0


@pytest.mark.slow
def test_the_replacement_of_a_worker_recycled_for_memory_starts_while_it_drains() -> None:
    """One worker, running an 8 s request, grows past its limit: its successor serves
    within a second or two, while the old one finishes that request. Gunicorn started
    it only once the old one had exited, and the pod served nothing meanwhile."""
    fresh = _fresh_worker_mib()
    environ = {
        "GUNICORN_WORKERS": "1",
        "HEALTH_CHECKS": "",
        "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "WORKER_MAX_MEMORY_MIB": str(fresh + 40),
    }
    with Server(environ) as server:
        (old,) = server.wait_for_workers(1)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(server.get, "/_test/sleep?s=8")
            time.sleep(0.5)  # the slow request runs
            grown = time.monotonic()
            assert server.get("/_test/grow?kib=65536").json()["pid"] == old
            answered_by = old
            while answered_by == old and time.monotonic() - grown < 15:
                answered_by = server.get("/_test/pid", headers={"connection": "close"}).json()[
                    "pid"
                ]
            replaced_after = time.monotonic() - grown
            still_draining = not slow.done()
            assert slow.result(timeout=30).status_code == 200  # nothing lost
        log = server.log()
    print(f"\nthe successor served {replaced_after:.1f}s after the old worker passed its limit")
    assert answered_by != old
    assert still_draining, "the old worker's request was still running"
    assert replaced_after < 4
    assert "Worker over its memory limit" in log


def _fresh_worker_mib() -> int:
    """A worker's resident memory before it has grown."""
    with Server({"HEALTH_CHECKS": "", "GUNICORN_WORKERS": "1"}) as server:
        (worker,) = server.wait_for_workers(1)
        with open(f"/proc/{worker}/statm") as statm:
            return int(statm.read().split()[1]) * memory._PAGE // memory.MIB
