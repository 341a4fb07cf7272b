"""The overload phase: more synchronous requests than one worker serves, offered at
a fixed rate whatever the answers (an open loop, as real clients arrive; wrk's
closed loop would slow down with the server and never overload it).

The view is ``/api/upstream/sync``: a thread blocked 50 ms on the upstream, so a
worker with 5 threads serves about 100 requests a second. Ours refuses what it
cannot serve in time (503 with ``Retry-After``); gthread queues everything, and a
request's wait grows with the queue. Goodput counts only 200s answered within the
request timeout: an answer after it is as good as none to a client that gave up.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench.contenders import UPSTREAM_DELAY_MS, UPSTREAM_SYNC
from bench.results import Overload

PATH = UPSTREAM_SYNC
CONTENDERS = ("ours", "gthread")
TIMEOUT_SECONDS = 10  # GUNICORN_TIMEOUT in this phase: the deadline a client has
THREADS = 5
CAPACITY_PER_WORKER = THREADS * 1000 / UPSTREAM_DELAY_MS  # requests a second
MULTIPLE = 3.5  # offered ÷ capacity
SECONDS = 15
CLIENT_TIMEOUT_SECONDS = 30  # how long the load generator waits for any answer


@dataclass
class _Answers:
    """What came back, as it comes: latencies by outcome, statuses."""

    seconds: float
    timeout: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # by outcome, in s
    statuses: Counter[str] = field(default_factory=Counter)

    def recorded(self, offered_rps: float) -> Overload:
        admitted = sorted(self.latencies.get("ok", []) + self.latencies.get("late", []))
        refused = self.latencies.get("refused", [])
        return Overload(
            path=PATH,
            offered_rps=offered_rps,
            multiple=MULTIPLE,
            threads=THREADS,
            seconds=self.seconds,
            timeout_seconds=self.timeout,
            outcomes={outcome: len(found) for outcome, found in sorted(self.latencies.items())},
            statuses=dict(sorted(self.statuses.items())),
            p99_admitted_ms=(
                admitted[min(len(admitted) - 1, int(len(admitted) * 0.99))] * 1000
                if admitted
                else None
            ),
            refusal_median_ms=statistics.median(refused) * 1000 if refused else None,
        )


def offer(port: int, workers: int, seconds: int = SECONDS) -> Overload:
    rate = CAPACITY_PER_WORKER * workers * MULTIPLE
    answers = _Answers(seconds=seconds, timeout=TIMEOUT_SECONDS)
    asyncio.run(_offer(f"http://127.0.0.1:{port}{PATH}", rate, answers))
    return answers.recorded(rate)


async def _offer(url: str, rate: float, result: _Answers) -> None:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        loop = asyncio.get_running_loop()
        began = loop.time()
        tasks = []
        for n in range(int(rate * result.seconds)):
            await asyncio.sleep(max(0.0, began + n / rate - loop.time()))
            tasks.append(asyncio.create_task(_one(session, url, result)))
        await asyncio.gather(*tasks)


async def _one(session: aiohttp.ClientSession, url: str, result: _Answers) -> None:
    started = time.monotonic()
    try:
        async with session.get(url) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        outcome, status_label = "failed", type(error).__name__
    else:
        status_label = str(status)
        if status == 200:
            late = time.monotonic() - started > result.timeout
            outcome = "late" if late else "ok"
        elif status == 503:
            outcome = "refused"
        else:
            outcome = "error"
    result.statuses[status_label] += 1
    result.latencies.setdefault(outcome, []).append(time.monotonic() - started)
