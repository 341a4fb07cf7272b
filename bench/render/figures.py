"""The figures the reports show, derived from the HTTP phase's raw runs: the median
round of each contender on each endpoint, errors summed over every run, ratios.

Medians over rounds, so one disturbed round does not move a number; errors are
summed over every run, warm-up included, so a single failure stays visible.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from bench.contenders import PEER, UPSTREAM, VARIANT
from bench.results import Contender, HttpResults, Load, Run

MIB = 1024


@dataclass(frozen=True)
class Errors:
    """Errors over several wrk runs: how many, and of what kind."""

    total: int = 0
    timeouts: int = 0  # no answer within wrk's timeout
    statuses: int = 0  # answered with a status of 400 or more

    @classmethod
    def of(cls, loads: list[Load]) -> Errors:
        return cls(
            sum(load.errors for load in loads),
            sum(load.timeouts for load in loads),
            sum(load.status_errors for load in loads),
        )

    def __bool__(self) -> bool:
        return self.total > 0

    def describe(self) -> str:
        kinds = [
            f"{self.timeouts} timed out" if self.timeouts else "",
            f"{self.statuses} with status ≥ 400" if self.statuses else "",
        ]
        other = self.total - self.timeouts - self.statuses
        kinds.append(f"{other} connect/read/write errors" if other else "")
        return f"{self.total} ({', '.join(k for k in kinds if k)})"


@dataclass(frozen=True)
class Cell:
    """One contender on one endpoint: the median round, every error."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: Errors
    others_share: float | None


@dataclass(frozen=True)
class Ratio:
    """Ours against one other contender on one endpoint; above 1 means ours is ahead."""

    throughput: float  # our req/s ÷ theirs
    efficiency: float  # their CPU per request ÷ ours (the noise-robust view)


def _grouped(runs: list[Run], warmup: bool) -> dict[tuple[str, str], list[Run]]:
    found: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.warmup == warmup:
            found.setdefault((run.contender, run.path), []).append(run)
    return found


class Figures:
    """The HTTP phase's results, read as the reports need them."""

    def __init__(self, http: HttpResults) -> None:
        self.http = http
        self.options = http.options
        self.started = datetime.fromisoformat(http.run.started)
        self.rounds = _grouped(http.runs, warmup=False)
        self.warmups = _grouped(http.runs, warmup=True)
        self.mixed_rounds = _grouped(http.mixed, warmup=False)
        self.mixed_warmups = _grouped(http.mixed, warmup=True)

    # Who -------------------------------------------------------------------------

    @property
    def contenders(self) -> tuple[Contender, ...]:
        return self.http.contenders

    @cached_property
    def ours(self) -> Contender:
        return next(c for c in self.contenders if c.role == "ours")

    @cached_property
    def peers(self) -> list[Contender]:
        return [c for c in self.contenders if c.role == PEER]

    @cached_property
    def asgi_peers(self) -> list[Contender]:
        return [c for c in self.peers if not c.wsgi]

    @cached_property
    def gthread(self) -> Contender | None:
        return next((c for c in self.peers if c.wsgi), None)

    @cached_property
    def variants(self) -> list[Contender]:
        return [c for c in self.contenders if c.role == VARIANT]

    @cached_property
    def ceiling(self) -> Contender | None:
        return next((c for c in self.contenders if c.role == "ceiling"), None)

    def contender(self, key: str) -> Contender | None:
        return next((c for c in self.contenders if c.key == key), None)

    @cached_property
    def mixed_contenders(self) -> list[Contender]:
        keys = {key for key, _ in self.mixed_rounds}
        return [c for c in self.contenders if c.key in keys]

    @cached_property
    def endpoints(self) -> list[str]:
        return list(dict.fromkeys(path for c in self.contenders for path in c.endpoints))

    @property
    def mixed_paths(self) -> list[str]:
        return [path for path, _ in self.http.mixed_load]

    def connections_for(self, path: str) -> int:
        options = self.options
        return options.upstream_connections if path == UPSTREAM else options.connections

    # What ------------------------------------------------------------------------

    def cell(self, key: str, path: str) -> Cell | None:
        runs = self.rounds.get((key, path))
        if not runs:
            return None
        shares = [run.others_share for run in runs if run.others_share is not None]
        warmups = self.warmups.get((key, path), [])
        return Cell(
            rps=statistics.median(run.load.rps for run in runs),
            p50_ms=statistics.median(run.load.p50_ms for run in runs),
            p99_ms=statistics.median(run.load.p99_ms for run in runs),
            cpu_us=statistics.median(run.cpu_us_per_request for run in runs),
            errors=Errors.of([run.load for run in runs + warmups]),
            others_share=statistics.median(shares) if shares else None,
        )

    def mixed_cell(self, key: str, path: str) -> Cell | None:
        runs = self.mixed_rounds.get((key, path))
        if not runs:
            return None
        warmups = self.mixed_warmups.get((key, path), [])
        return Cell(
            rps=statistics.median(run.load.rps for run in runs),
            p50_ms=statistics.median(run.load.p50_ms for run in runs),
            p99_ms=statistics.median(run.load.p99_ms for run in runs),
            cpu_us=0.0,
            errors=Errors.of([run.load for run in runs + warmups]),
            others_share=None,
        )

    def ratio(self, other: str, path: str, mine: str = "ours") -> Ratio | None:
        ours, theirs = self.cell(mine, path), self.cell(other, path)
        if ours is None or theirs is None or not theirs.rps or not ours.cpu_us:
            return None
        return Ratio(ours.rps / theirs.rps, theirs.cpu_us / ours.cpu_us)

    def round_efficiencies(self, other: str, path: str, mine: str = "ours") -> list[float]:
        """Their CPU per request ÷ ours, round by round (the rounds are interleaved: each
        round drives every contender once, so a round's pair shared the same minute)."""
        ours = self.rounds.get((mine, path), [])
        theirs = self.rounds.get((other, path), [])
        return [
            b.cpu_us_per_request / a.cpu_us_per_request
            for a, b in zip(ours, theirs, strict=False)
            if a.cpu_us_per_request
        ]

    def total_errors(self) -> int:
        normal = sum(
            self.cell(key, path).errors.total  # type: ignore[union-attr]
            for key, path in self.rounds
        )
        mixed = sum(
            self.mixed_cell(key, path).errors.total  # type: ignore[union-attr]
            for key, path in self.mixed_rounds
        )
        return normal + mixed

    def errors_by_run(self) -> list[str]:
        """Where errors happened, as 'contender path: N (of which kinds)'."""
        found = []
        for c in self.contenders:
            for path in c.endpoints:
                x = self.cell(c.key, path)
                if x and x.errors:
                    found.append(f"{c.key} `{path}`: {x.errors.describe()}")
            for path in c.mixed_paths:
                m = self.mixed_cell(c.key, path)
                if m and m.errors:
                    found.append(f"{c.key} `{path}` (mixed load): {m.errors.describe()}")
        return found

    def replaced_workers(self) -> list[str]:
        """Servers whose master showed more children than it has workers: a worker was
        replaced (crashed, timed out) or something else was forked, during the load."""
        return [
            f"{key}: {peak.worker_pids}"
            for key, peak in self.http.memory.items()
            if peak.worker_pids > self.options.workers
        ]

    def others_shares(self) -> list[float]:
        return [
            run.others_share
            for runs in self.rounds.values()
            for run in runs
            if run.others_share is not None
        ]
