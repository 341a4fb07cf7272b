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

PATH = UPSTREAM_SYNC
CONTENDERS = ("ours", "gthread")
TIMEOUT_SECONDS = 10  # GUNICORN_TIMEOUT in this phase: the deadline a client has
THREADS = 5
CAPACITY_PER_WORKER = THREADS * 1000 / UPSTREAM_DELAY_MS  # requests a second
MULTIPLE = 3.5  # offered ÷ capacity
SECONDS = 15
CLIENT_TIMEOUT_SECONDS = 30  # how long the load generator waits for any answer


@dataclass
class Overload:
    offered_rps: float
    seconds: float
    timeout: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # by outcome, in s
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def goodput_rps(self) -> float:
        return len(self.latencies.get("ok", [])) / self.seconds

    @property
    def refused(self) -> int:
        return len(self.latencies.get("refused", []))

    @property
    def late_or_failed(self) -> int:
        return sum(len(v) for k, v in self.latencies.items() if k not in ("ok", "refused"))

    def p99_admitted_ms(self) -> float | None:
        admitted = sorted(self.latencies.get("ok", []) + self.latencies.get("late", []))
        if not admitted:
            return None
        return admitted[min(len(admitted) - 1, int(len(admitted) * 0.99))] * 1000

    def refusal_median_ms(self) -> float | None:
        refused = self.latencies.get("refused", [])
        return statistics.median(refused) * 1000 if refused else None


def offer(port: int, workers: int, seconds: int = SECONDS) -> Overload:
    rate = CAPACITY_PER_WORKER * workers * MULTIPLE
    result = Overload(offered_rps=rate, seconds=seconds, timeout=TIMEOUT_SECONDS)
    asyncio.run(_offer(f"http://127.0.0.1:{port}{PATH}", rate, result))
    return result


async def _offer(url: str, rate: float, result: Overload) -> None:
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


async def _one(session: aiohttp.ClientSession, url: str, result: Overload) -> None:
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


# The report's part ----------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def table(results: dict[str, Overload], labels: dict[str, str]) -> list[str]:
    """The overload rows, as markdown lines."""
    if not results:
        return []
    first = next(iter(results.values()))
    lines = [
        f"`{PATH}` offered at {first.offered_rps:,.0f} req/s ({MULTIPLE:g}× what the workers' "
        f"{THREADS} threads serve) for {first.seconds:g} s, whatever the answers; "
        f"`GUNICORN_TIMEOUT={TIMEOUT_SECONDS}`. Goodput: 200s within the timeout, per second.",
        "",
        "| Contender | Goodput | p99 of admitted | Refused (503) | Time to a refusal, median "
        "| Late (200 after the timeout) or failed | Statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, result in results.items():
        statuses = ", ".join(
            f"{status}: {count:,}" for status, count in sorted(result.statuses.items())
        )
        lines.append(
            f"| {labels.get(key, key)} | {result.goodput_rps:,.0f} req/s | "
            f"{_ms(result.p99_admitted_ms())} | {result.refused:,} | "
            f"{_ms(result.refusal_median_ms())} | {result.late_or_failed:,} | {statuses} |"
        )
    return [*lines, ""]


def targets(results: dict[str, Overload]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the report's targets table."""
    mine, theirs = results.get("ours"), results.get("gthread")
    if mine is None:
        return []
    found = []
    p99 = mine.p99_admitted_ms()
    found.append(
        (
            f"Overload: admitted requests' p99 within the {TIMEOUT_SECONDS} s timeout, none late",
            f"p99 {_ms(p99)}, {mine.late_or_failed:,} late or failed",
            "met"
            if p99 is not None and p99 < TIMEOUT_SECONDS * 1000 and not mine.late_or_failed
            else "**missed**",
        )
    )
    refusal = mine.refusal_median_ms()
    found.append(
        (
            "Overload: a refusal answered in milliseconds (median < 100 ms)",
            f"{_ms(refusal)} over {mine.refused:,} refusals",
            "met" if refusal is not None and refusal < 100 else "**missed**",
        )
    )
    if theirs is not None:
        found.append(
            (
                "Overload: goodput at least gthread's",
                f"ours {mine.goodput_rps:,.0f} req/s, gthread {theirs.goodput_rps:,.0f} req/s",
                "met" if mine.goodput_rps >= theirs.goodput_rps else "**missed**",
            )
        )
    return found
