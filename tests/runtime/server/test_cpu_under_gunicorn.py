"""GUNICORN_WORKERS=auto under real Gunicorn in real cgroups whose CPU quota the test
changes while the server runs, as the kubelet does on an in-place resize: the worker
count follows, within seconds, and the workers retired finish their requests. A
limit set only on the pod (a parent cgroup) counts where it can be seen, and where
it cannot (a container's own cgroup namespace) the log says that no limit was found.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterator

import pytest

from django_k8s_runtime.server.cpu import NOT_FOUND
from tests.support import cgroups
from tests.support.requirements import require, require_tool
from tests.support.server import Server

pytestmark = pytest.mark.slow

FOLLOW_SECONDS = 15  # generous: the master reads the quota again every second


@pytest.fixture
def pod() -> Iterator[cgroups.PodCgroups]:
    why = cgroups.why_not_usable()
    require(why is None, f"cannot make CPU cgroups here: {why}")
    with cgroups.PodCgroups() as made:
        yield made


def auto_server(wrap: Callable[[list[str]], list[str]]) -> Server:
    """The server with GUNICORN_WORKERS=auto, its command started by ``wrap``."""
    server = Server({"GUNICORN_WORKERS": "auto", "HEALTH_CHECKS": ""})
    server.command = wrap(server.command)
    return server


def messages(server: Server) -> list[str]:
    return [json.loads(line)["message"] for line in server.log_lines() if line.startswith("{")]


def auto_lines(server: Server) -> list[str]:
    return [line for line in messages(server) if line.startswith("GUNICORN_WORKERS=auto")]


def wait_for_worker_count(server: Server, count: int) -> float:
    """Seconds until the master has exactly ``count`` workers."""
    started = time.monotonic()
    while len(server.workers()) != count:
        assert time.monotonic() - started < FOLLOW_SECONDS, (
            f"{len(server.workers())} workers, not {count}:\n{server.log()}"
        )
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_workers_follow_the_containers_quota_as_it_is_resized(pod) -> None:
    pod.set_cpus(pod.container, 1.5)
    with auto_server(pod.run_inside) as server:
        first_workers = set(server.wait_for_workers(2))
        (first,) = auto_lines(server)
        source = (
            f"cgroup v2 {pod.quota_file(pod.container)}: 150000/100000"
            if pod.version == 2
            else f"cgroup v1 {pod.container}: cfs_quota_us=150000 cfs_period_us=100000"
        )
        assert first == f"GUNICORN_WORKERS=auto: 2 workers = max(2, ceil(1.5 CPUs from {source}))"

        with concurrent.futures.ThreadPoolExecutor(8) as clients:
            # Requests in flight on the two first workers, the oldest...
            pending = [clients.submit(server.get, "/_test/sleep?s=6") for _ in range(8)]
            time.sleep(0.5)
            pod.set_cpus(pod.container, 4)  # resized up: two more workers
            grown_in = wait_for_worker_count(server, 4)
            changed = auto_lines(server)[-1]
            assert changed.startswith(
                "GUNICORN_WORKERS=auto: the CPU limit changed, 4 workers = max(2, ceil(4 CPUs "
            )
            assert changed.endswith("(was 2)")
            # ...then down to one CPU: the oldest two are retired, and finish them first.
            pod.set_cpus(pod.container, 1)
            shrunk_in = wait_for_worker_count(server, 2)
            responses = [future.result() for future in pending]
        assert [response.status_code for response in responses] == [200] * 8
        assert {response.json()["pid"] for response in responses} <= first_workers
        assert not first_workers & set(server.workers()), "the oldest were retired"
        assert "(was 4)" in auto_lines(server)[-1]
    print(f"followed the quota up in {grown_in:.1f}s, down in {shrunk_in:.1f}s")


def test_a_limit_set_only_on_the_pod_is_found_and_followed(pod) -> None:
    pod.set_cpus(pod.pod, 3)
    pod.set_cpus(pod.container, None)
    with auto_server(pod.run_inside) as server:
        server.wait_for_workers(3)
        (first,) = auto_lines(server)
        assert first.startswith("GUNICORN_WORKERS=auto: 3 workers = max(2, ceil(3 CPUs from ")
        assert f" {pod.pod}" in first, "named where it was found: the pod's cgroup"
        pod.set_cpus(pod.pod, 2)
        wait_for_worker_count(server, 2)


def test_a_pod_level_limit_out_of_the_containers_sight_is_reported_as_none_found(pod) -> None:
    require_tool("unshare", "mount")
    pod.set_cpus(pod.pod, 3)
    pod.set_cpus(pod.container, None)
    with auto_server(pod.run_as_a_container) as server:
        server.wait_for_workers(2)
        (first,) = auto_lines(server)
    assert first.startswith(f"GUNICORN_WORKERS=auto: {NOT_FOUND}; 2 workers = max(2, ceil(")
    assert first.endswith("CPUs from the CPUs this process may run on (its affinity)))")
