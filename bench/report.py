"""Turn a session's measurements into docs/benchmarks.md, a chart and a console summary.

Medians over rounds, so one disturbed round does not move a number; errors are
summed over every run, warm-up included, so a single failure stays visible.
The prose explaining the results lives in ``bench/analysis.md`` and is copied in
as written: it was measured once, by hand, and says when.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine, overload, processes
from bench.contenders import (
    DJANGO_VIEWS,
    ENDPOINT_NAMES,
    GTHREAD_THREADS,
    HELLO,
    LIVE,
    MIXED_LOAD,
    PEER,
    SYNC_VIEWS,
    UPSTREAM,
    UPSTREAM_SYNC,
    VARIANT,
    Contender,
)
from bench.session import Measurements
from harness import wrk

ANALYSIS = Path(__file__).with_name("analysis.md")
CHART = "benchmarks.png"
MIB = 1024

# The targets ----------------------------------------------------------------

# CPU per request against gthread on the synchronous views: at or above this
# efficiency (gthread's CPU per request ÷ ours) the target is met; between NEAR and
# MET it is near and wants explaining; below NEAR it is missed.
EFFICIENCY_MET = 1.00
EFFICIENCY_NEAR = 0.90
CEILING_SHARE = 0.70  # /health/live against the raw ASGI ceiling
# Ours as deployed (the access log and metrics on, their defaults) against ours with
# both off: what the two features may cost.
DEPLOYED = "ours-deployed"
FEATURES_COST = 0.05  # of /api/hello's CPU per request
DEPLOYED_LIVE_SHARE = 0.95  # of /health/live's req/s
# Peak memory per worker of ours before the one-hop request path (Django's own
# ASGIHandler in our worker): docs/benchmarks.md as measured on 2026-11-24 10:25 UTC
# at commit 43c3ebe and committed in 8c04b63. That run had no /api/upstream and no
# mixed load, whose threads this run's peak includes.
PREVIOUS_WORKER_RSS_MIB = 74
PREVIOUS_WORKER_PSS_MIB = 56
# A probe answering later than this fails: every probe's timeoutSeconds in
# deploy/kubernetes/deployment.yaml.
PROBE_TIMEOUT_SECONDS = 2


def _above_previous(mib: float, previous: int) -> bool:
    """The previous figures were published in whole MiB, so they are compared at
    that precision: 74.3 against a published 74 is level, not 0.3 above."""
    return round(mib) > previous


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
class Errors:
    """Errors over several wrk runs: how many, and of what kind."""

    total: int = 0
    timeouts: int = 0  # no answer within wrk's timeout
    statuses: int = 0  # answered with a status of 400 or more

    @classmethod
    def of(cls, results: list[wrk.Result]) -> Errors:
        return cls(
            sum(r.errors for r in results),
            sum(r.timeouts for r in results),
            sum(r.status_errors for r in results),
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


def cell(measurements: Measurements, key: str, path: str) -> Cell | None:
    runs = measurements.runs.get((key, path))
    if not runs:
        return None
    shares = [run.others_share for run in runs if run.others_share is not None]
    warmup = measurements.warmups.get((key, path))
    return Cell(
        rps=statistics.median(run.wrk.rps for run in runs),
        p50_ms=statistics.median(run.wrk.p50_ms for run in runs),
        p99_ms=statistics.median(run.wrk.p99_ms for run in runs),
        cpu_us=statistics.median(run.cpu_us_per_request for run in runs),
        errors=Errors.of([run.wrk for run in runs] + ([warmup] if warmup else [])),
        others_share=statistics.median(shares) if shares else None,
    )


@dataclass(frozen=True)
class MixedCell:
    """One contender on one path of the mixed load: the median round, every error."""

    rps: float
    p99_ms: float
    errors: Errors


def mixed_cell(measurements: Measurements, key: str, path: str) -> MixedCell | None:
    results = measurements.mixed.get((key, path))
    if not results:
        return None
    warmup = measurements.mixed_warmups.get((key, path))
    return MixedCell(
        rps=statistics.median(result.rps for result in results),
        p99_ms=statistics.median(result.p99_ms for result in results),
        errors=Errors.of(results + ([warmup] if warmup else [])),
    )


def ours(measurements: Measurements) -> Contender:
    return next(c for c in measurements.contenders if c.is_ours)


def peers(measurements: Measurements) -> list[Contender]:
    return [c for c in measurements.contenders if c.role == PEER]


def asgi_peers(measurements: Measurements) -> list[Contender]:
    return [c for c in peers(measurements) if not c.wsgi]


def contender(measurements: Measurements, key: str) -> Contender | None:
    return next((c for c in measurements.contenders if c.key == key), None)


def gthread(measurements: Measurements) -> Contender | None:
    return next((c for c in peers(measurements) if c.wsgi), None)


def variants(measurements: Measurements) -> list[Contender]:
    return [c for c in measurements.contenders if c.role == VARIANT]


def ceiling(measurements: Measurements) -> Contender | None:
    return next((c for c in measurements.contenders if c.is_ceiling), None)


def mixed_contenders(measurements: Measurements) -> list[Contender]:
    return [c for c in measurements.contenders if any(k == c.key for k, _ in measurements.mixed)]


def endpoints(measurements: Measurements) -> list[str]:
    return list(dict.fromkeys(path for c in measurements.contenders for path in c.endpoints))


# Ratios ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """Ours against one other contender on one endpoint; above 1 means ours is ahead."""

    throughput: float  # our req/s ÷ theirs
    efficiency: float  # their CPU per request ÷ ours (the noise-robust view)


def ratio(measurements: Measurements, other: str, path: str, mine: str = "ours") -> Ratio | None:
    ours_, theirs = cell(measurements, mine, path), cell(measurements, other, path)
    if ours_ is None or theirs is None or not theirs.rps or not ours_.cpu_us:
        return None
    return Ratio(ours_.rps / theirs.rps, theirs.cpu_us / ours_.cpu_us)


def round_efficiencies(
    measurements: Measurements, other: str, path: str, mine: str = "ours"
) -> list[float]:
    """Their CPU per request ÷ ours, round by round (the rounds are interleaved: each
    round drives every contender once, so a round's pair shared the same minute)."""
    ours_ = measurements.runs.get((mine, path), [])
    theirs = measurements.runs.get((other, path), [])
    return [
        b.cpu_us_per_request / a.cpu_us_per_request
        for a, b in zip(ours_, theirs, strict=False)
        if a.cpu_us_per_request
    ]


def _spread(values: list[float]) -> float:
    """Half the range of the rounds' values: how far one round strays."""
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def total_errors(measurements: Measurements) -> int:
    normal = sum(
        cell(measurements, c.key, path).errors.total  # type: ignore[union-attr]
        for c in measurements.contenders
        for path in c.endpoints
        if (c.key, path) in measurements.runs
    )
    mixed = sum(
        mixed_cell(measurements, key, path).errors.total  # type: ignore[union-attr]
        for key, path in measurements.mixed
    )
    return normal + mixed


def errors_by_run(measurements: Measurements) -> list[str]:
    """Where errors happened, as 'contender path: N (of which kinds)'."""
    found = []
    for c in measurements.contenders:
        for path in c.endpoints:
            x = cell(measurements, c.key, path)
            if x and x.errors:
                found.append(f"{c.key} `{path}`: {x.errors.describe()}")
        for path in c.mixed_paths:
            m = mixed_cell(measurements, c.key, path)
            if m and m.errors:
                found.append(f"{c.key} `{path}` (mixed load): {m.errors.describe()}")
    return found


def replaced_workers(measurements: Measurements) -> list[str]:
    """Servers whose master showed more children than it has workers: a worker was
    replaced (crashed, timed out) or something else was forked, during the load."""
    return [
        f"{key}: {len(peaks.worker_pids)}"
        for key, peaks in measurements.memory.items()
        if len(peaks.worker_pids) > measurements.options.workers
    ]


# Where ours loses --------------------------------------------------------------


def losses(measurements: Measurements) -> list[str]:
    """Every comparison where another contender did better than ours, each with its
    numbers: req/s or CPU per request on each endpoint (p99 too on /api/upstream),
    req/s or p99 in the mixed load, memory against the previous figures."""
    found: list[str] = []
    for path in endpoints(measurements):
        behind = []
        for other in peers(measurements):
            versus = ratio(measurements, other.key, path)
            if versus is None:
                continue
            by = []
            if versus.throughput < 1:
                by.append(f"{_x(versus.throughput)} req/s")
            if versus.efficiency < 1:
                by.append(f"{_x(versus.efficiency)} CPU")
            if path == UPSTREAM:
                mine, theirs = cell(measurements, "ours", path), cell(measurements, other.key, path)
                if mine and theirs and mine.p99_ms > theirs.p99_ms:
                    by.append(f"p99 {mine.p99_ms:,.0f} ms against {theirs.p99_ms:,.0f} ms")
            if by:
                behind.append(f"{other.label}: {', '.join(by)}")
        if behind:
            found.append(f"`{path}`, behind " + "; ".join(behind))
    me = ours(measurements)
    for path in me.mixed_paths:
        mine = mixed_cell(measurements, me.key, path)
        if mine is None:
            continue
        behind = []
        for other in mixed_contenders(measurements):
            theirs = mixed_cell(measurements, other.key, path)
            if other.is_ours or theirs is None:
                continue
            by = []
            if theirs.rps > mine.rps:
                by.append(f"{theirs.rps:,.0f} req/s against our {mine.rps:,.0f}")
            if theirs.p99_ms < mine.p99_ms:
                by.append(f"p99 {theirs.p99_ms:,.0f} ms against our {mine.p99_ms:,.0f}")
            if by:
                behind.append(f"{other.label}: {', '.join(by)}")
        if behind:
            found.append(f"mixed load, `{path}`, behind " + "; ".join(behind))
    peaks = measurements.memory_before_upstream.get(me.key)
    if peaks:
        rss, pss = peaks.worker_rss_kib / MIB, peaks.worker_pss_kib / MIB
        if _above_previous(rss, PREVIOUS_WORKER_RSS_MIB) or _above_previous(
            pss, PREVIOUS_WORKER_PSS_MIB
        ):
            found.append(
                f"memory per worker without `{UPSTREAM}`: {rss:.0f} MiB RSS / {pss:.0f} MiB "
                f"PSS at peak, above the previous {PREVIOUS_WORKER_RSS_MIB} / "
                f"{PREVIOUS_WORKER_PSS_MIB}"
            )
    return found


# Markdown --------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _path_header(measurements: Measurements, path: str) -> str:
    count = measurements.options.connections_for(path)
    if count == measurements.options.connections:
        return f"`{path}`"
    return f"`{path}` ({count} conn.)"


def _per_endpoint(measurements: Measurements, show: Callable[[Cell], str]) -> list[str]:
    paths = endpoints(measurements)
    rows = []
    for c in measurements.contenders:
        row = [_name(c)]
        for path in paths:
            found = cell(measurements, c.key, path)
            row.append(show(found) if found else "n/a")
        rows.append(row)
    return _table(["", *(_path_header(measurements, path) for path in paths)], rows)


def _name(c: Contender) -> str:
    return f"**{c.label}**" if c.is_ours else c.label


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _x(value: float) -> str:
    return f"{value:.2f}×"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _method(measurements: Measurements) -> list[str]:
    options = measurements.options
    server = _cpus(measurements.server_cpus)
    loader = _cpus(measurements.load_cpus)
    pinning = (
        f"servers pinned to CPU {server} (`taskset`), wrk, PostgreSQL, the upstream "
        f"stand-in and the harness to CPU {loader}"
        if server
        else "only one CPU available: nothing pinned, so wrk competes with the server"
    )
    mixed = ", ".join(f"{count} connections on `{path}`" for path, count in MIXED_LOAD)
    return [
        f"- **Workers:** {options.workers} per contender, every contender. With two cores, "
        "one serves and the other generates the load and runs PostgreSQL, so that a busy "
        "load generator or database never takes CPU from the server being measured. One "
        "worker on its own core is the unit that scales: N workers on N cores multiply "
        "it for every contender alike, so the ratios hold.",
        f"- **Pinning:** {pinning}.",
        "- **What the ASGI peers serve:** `bench.stock:application`, i.e. Django's own "
        "`ASGIHandler` (`get_asgi_application()`) inside the same probes, request-timeout "
        "and observer layers as ours (`config.asgi.stack`): what a team gets by pointing "
        "Uvicorn, Gunicorn's `-k asgi` or Granian at its Django project. Ours serves "
        "`config.asgi:application`, the same layers around the runtime's request path (one visit "
        "to a thread per request). So on Django's views the peers differ from ours in the "
        "server *and* in Django's request path; the *Granian serving our application* row "
        "separates the two. Only ours sets a request timeout (our worker tells the layer "
        "Gunicorn's timeout); elsewhere `RequestTimeout` passes requests through.",
        f"- **Load:** `wrk` with 1 thread and {options.connections} keep-alive connections "
        f"({options.upstream_connections} on `{UPSTREAM}`, where the work is waiting), "
        f"{options.seconds} s per run ({options.upstream_seconds} s on `{UPSTREAM}`: see "
        f"*Latency*); {options.warmup_seconds} s of warm-up per contender "
        f"and endpoint first; then {_n(options.rounds, 'round')}, interleaved (every contender on "
        "an endpoint in turn, then the next endpoint, then the next round) so drift hits "
        f"all alike. `{UPSTREAM}`'s warm-up and rounds come after the other endpoints', so "
        "that memory can be read without and with it. Each number is the median of the "
        "rounds. After each run the harness waits until the server uses less than a tenth "
        "of its core (at most 15 s), so requests it still had queued are not served during "
        "the next contender's run.",
        "- **The upstream:** `/api/upstream` (an `async def` view, aiohttp) and "
        "`/api/upstream/sync` (a synchronous view, urllib, holding its thread) call one "
        "stand-in service, `uvicorn example.upstream:app` (uvloop + httptools, no access "
        "log, lifespan off), started once for the session on the load CPU; every "
        "contender gets `EXAMPLE_UPSTREAM_URL=http://127.0.0.1:<port>/quote?delay_ms=50`, "
        "so each call waits 50 ms. Under gthread the async view runs through Django's "
        f"WSGI handler (`async_to_sync`) in its {GTHREAD_THREADS} threads.",
        f"- **Mixed load:** after the rounds, {mixed}, at once (three `wrk` processes; "
        "gthread has no probe, so two), for "
        f"{options.mixed_seconds} s, {_n(options.mixed_rounds, 'round')} interleaved after "
        f"{options.warmup_seconds} s of warm-up; the median round. The synchronous views "
        "keep every thread of ours and gthread's busy waiting on the upstream: the question "
        "is whether the async view and the probe still answer.",
        "- **Latency:** wrk's p50 and p99 of the requests that completed within the run. "
        "Where a contender serves few requests per second for many connections, requests "
        "still queued when the run ends are not counted, so its p99 is then a lower bound. "
        f"That is why runs on `{UPSTREAM}` are longer: with {options.upstream_connections} "
        "connections a contender that takes seconds per request completes none in a short "
        "run, and its req/s read as nearly 0. Even so, a contender whose requests take L "
        "seconds completes nothing in a run's first L seconds, so its req/s is understated "
        f"by about L ÷ {options.upstream_seconds} (compare its p50).",
        "- **Errors:** wrk's socket errors (connect, read, write, timeout after 5 s) plus "
        "responses with a status of 400 or more (a 503 from the upstream views counts), "
        "summed over every run including warm-up. Before any load, every endpoint must "
        "answer exactly 200 (no redirect counted as success).",
        "- **CPU per request:** the server's user + system CPU time (all its processes) "
        "during a run divided by the requests served. It hardly depends on what else runs "
        "on the machine, unlike req/s, and so is the fairer comparison on a shared host.",
        "- **Memory:** RSS and PSS of each worker process from `/proc/<pid>/smaps_rollup`, "
        "sampled every 0.25 s through warm-up, rounds and the mixed load; the peak is "
        f"reported, once for the endpoints other than `{UPSTREAM}` (as the previous "
        f"figures were measured) and once for the whole run, which adds the threads that "
        f"{options.upstream_connections} connections on `{UPSTREAM}` and the mixed load "
        "make. PSS shares pages with the master fairly; *all processes* adds the master "
        "(or main process).",
        "- **Start-to-ready:** from `exec` to the first 200 on `/health` (gthread: on "
        "`/api/items`, as it has no probes), each contender started alone, "
        f"{_n(options.startup_rounds, 'time')} interleaved; the median.",
        "- **Same environment for all:** production settings (`config.settings`, DEBUG "
        "off), a random 67-character `DJANGO_SECRET_KEY`, "
        "`DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost`, `DJANGO_HTTPS=false` (plain http on "
        "loopback, so nothing redirects), `DATABASE_URL` to the benchmark's own PostgreSQL "
        "(psycopg pool, 1–5 connections per worker), `EXAMPLE_UPSTREAM_URL` as above, "
        "`LOG_FORMAT=json`, `METRICS_PORT=0`. Ours reads its server settings from the "
        "environment; the peers get the equivalent ones on their command lines "
        "(`bench/contenders.py`).",
        "- **Access logs off, for everyone** (`GUNICORN_ACCESS_LOG=false`, "
        "`--no-access-log`, Gunicorn's default of none): writing a line per request "
        "measures the log pipe, not the server, and each server formats differently. "
        "Application logs stay on (JSON); nothing logs per request.",
        "- **`/health` with its default `HEALTH_CACHE_SECONDS=1`**, as deployed: the probe "
        "checks PostgreSQL (a new connection and `SELECT 1`) at most once a second per "
        "worker and otherwise answers from the cache. That cache is the point of the "
        "design, so this measures the probe path, not PostgreSQL's connection set-up.",
        "- **Database:** a throw-away PostgreSQL cluster on loopback, migrated, with "
        "20 `example.Item` rows; `/api/items` reads the latest 10.",
    ]


def _cpus(cpus: set[int] | None) -> str:
    return ",".join(map(str, sorted(cpus))) if cpus else ""


def markdown(measurements: Measurements) -> str:
    me = ours(measurements)
    options = measurements.options
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench` (python -m bench); edit bench/, not this file. -->",
        "",
        f"Measured {measurements.started:%Y-%m-%d %H:%M} UTC by `make bench` in "
        f"{measurements.elapsed_seconds / 60:.1f} minutes: the same Django project served "
        f"by each contender with {options.workers} worker, side by side. Numbers depend "
        "on the machine; the ratios are what carries over.",
        "",
        f"![Requests per second, CPU per request, p99 and the mixed load]({CHART})",
        "",
        "## Headline",
        "",
        *_headline(measurements),
        "",
        "## Targets",
        "",
        *_targets_table(measurements),
        f"Memory is held against ours before the one-hop request path: "
        f"{PREVIOUS_WORKER_RSS_MIB} MiB RSS / {PREVIOUS_WORKER_PSS_MIB} MiB PSS per worker "
        "(this report as generated on 2026-11-24, without `/api/upstream` or the mixed "
        "load). A probe that answers after its `timeoutSeconds` "
        f"({PROBE_TIMEOUT_SECONDS} s in `deploy/kubernetes/deployment.yaml`) has failed.",
        "",
        "## Contenders",
        "",
        *_table(
            ["Contender", "How it runs"],
            [[_name(c), c.note] for c in measurements.contenders],
        ),
        "## Results",
        "",
        "Endpoints: "
        + "; ".join(f"`{path}` {ENDPOINT_NAMES[path]}" for path in endpoints(measurements))
        + ".",
        "",
        f"Requests per second, median of {_n(options.rounds, 'round')} (higher is better):",
        "",
        *_per_endpoint(measurements, lambda x: f"{x.rps:,.0f}"),
        "Server CPU time per request, µs, median (lower is better; robust to other load "
        "on the machine):",
        "",
        *_per_endpoint(measurements, lambda x: f"{x.cpu_us:,.0f}"),
        f"Latency p50 / p99, ms, median (at {options.connections} connections, "
        f"{options.upstream_connections} on `{UPSTREAM}`):",
        "",
        *_per_endpoint(measurements, lambda x: f"{x.p50_ms:.2f} / {x.p99_ms:.1f}"),
        "Errors (socket errors + responses ≥ 400), all runs including warm-up:",
        "",
        *_per_endpoint(measurements, lambda x: f"**{x.errors.total}**" if x.errors else "0"),
        "### Mixed load",
        "",
        *_mixed_intro(measurements),
        *_mixed_table(measurements),
        "### Overload",
        "",
        *overload.table(measurements.overload, {c.key: _name(c) for c in measurements.contenders}),
        "### Memory per worker and start-up",
        "",
        *_memory_table(measurements),
        f"### Ours against each peer (×; above 1.00 means {me.label.split(':')[0]} is ahead)",
        "",
        "Each cell: req/s ratio (ours ÷ peer), then in brackets the CPU-efficiency ratio "
        "(peer's CPU per request ÷ ours).",
        "",
        *_ratio_table(measurements),
        "## Machine and versions",
        "",
        *_table(
            ["", ""],
            [
                *([k, v] for k, v in machine.describe().items()),
                ["Source", machine.source_revision()],
                ["PostgreSQL", measurements.postgres_version],
                ["wrk", wrk.version()],
                *([f"`{k}`", v] for k, v in machine.versions().items()),
                [
                    "Other load",
                    f"1-min load average {measurements.load_average[0]:.1f} at start, "
                    f"{measurements.load_average[1]:.1f} at end; " + _others_summary(measurements),
                ],
            ],
        ),
        "## Method",
        "",
        *_method(measurements),
        "",
    ]
    return "\n".join([*lines, _analysis()])


def _analysis() -> str:
    """The hand-written prose that ends the report, after the Method section."""
    return ANALYSIS.read_text().rstrip() + "\n" if ANALYSIS.exists() else ""


def _others_summary(measurements: Measurements) -> str:
    shares = [
        run.others_share
        for runs in measurements.runs.values()
        for run in runs
        if run.others_share is not None
    ]
    if not shares:
        return "the server core was not separated."
    mixed = measurements.mixed_others_shares
    return (
        "other processes used a median "
        f"{statistics.median(shares):.0%} (max {max(shares):.0%}) of the server's core "
        "during the measured runs"
        + (
            f", {statistics.median(mixed):.0%} (max {max(mixed):.0%}) during the mixed load"
            if mixed
            else ""
        )
        + " (this machine is shared: the higher, the noisier req/s)."
    )


# Headline ----------------------------------------------------------------------


def _headline(measurements: Measurements) -> list[str]:
    lines = []
    wsgi = gthread(measurements)
    for mine, how in (
        (DEPLOYED, "as deployed (access log and metrics on)"),
        ("ours", "with logs and metrics off"),
    ):
        parts = []
        for path in SYNC_VIEWS if wsgi else ():
            versus = ratio(measurements, wsgi.key, path, mine=mine)  # type: ignore[union-attr]
            ours_, theirs = cell(measurements, mine, path), cell(measurements, wsgi.key, path)  # type: ignore[union-attr]
            if versus and ours_ and theirs:
                parts.append(
                    f"`{path}` **{_x(versus.efficiency)}** ({ours_.cpu_us:,.0f} against "
                    f"{theirs.cpu_us:,.0f} µs; {_x(versus.throughput)} req/s)"
                )
        if parts:
            lines.append(
                f"- Ours {how}, CPU per request against {wsgi.label} on the synchronous "  # type: ignore[union-attr]
                "views (its CPU ÷ ours; above 1.00× ours uses less): " + ", ".join(parts) + "."
            )
    for peer in asgi_peers(measurements):
        values = [(path, ratio(measurements, peer.key, path)) for path in DJANGO_VIEWS]
        shown = [f"`{path}` {_x(v.throughput)} ({_x(v.efficiency)})" for path, v in values if v]
        if shown:
            lines.append(
                f"- Against {peer.label} on Django's views, req/s (CPU): " + ", ".join(shown) + "."
            )
    top = ceiling(measurements)
    live = ratio(measurements, top.key, LIVE) if top else None
    if live:
        lines.append(
            f"- `/health/live` at **{live.throughput:.0%}** of the raw ASGI ceiling's req/s "
            f"({live.efficiency:.0%} by CPU per request)."
        )
    upstream = _upstream_summary(measurements)
    if upstream:
        lines.append(
            f"- `{UPSTREAM}` at {measurements.options.upstream_connections} connections "
            f"(req/s, p99): " + "; ".join(upstream) + "."
        )
    mixed = _mixed_summary(measurements)
    if mixed:
        lines.append(
            "- Mixed load (sync views saturating the threads, at once with the async view "
            "and the probe): " + "; ".join(mixed) + "."
        )
    for variant in variants(measurements):
        costs = []
        for path in (LIVE, HELLO, UPSTREAM):
            mine, theirs = cell(measurements, "ours", path), cell(measurements, variant.key, path)
            if mine and theirs:
                costs.append(
                    f"{theirs.cpu_us - mine.cpu_us:+,.0f} µs CPU per request and "
                    f"{theirs.rps / mine.rps:.2f}× req/s on `{path}`"
                )
        if costs:
            lines.append(f"- {variant.label.capitalize()} against ours: " + ", ".join(costs) + ".")
    behind = losses(measurements)
    if behind:
        lines.append("- **Where ours loses:**")
        lines += [f"  - {item}" for item in behind]
    else:
        lines.append("- Ours is behind no peer on any endpoint, in the mixed load or in memory.")
    replaced = replaced_workers(measurements)
    if replaced:
        lines.append(
            f"- **More worker pids than workers** ({', '.join(replaced)}): a worker was "
            "replaced, or another child forked, during the load; see the server's log."
        )
    errors = total_errors(measurements)
    lines.append(
        f"- **Errors in all runs: {errors}** (" + ", ".join(errors_by_run(measurements)) + ")."
        if errors
        else "- No errors in any run (socket errors or statuses ≥ 400)."
    )
    return lines


def _upstream_summary(measurements: Measurements) -> list[str]:
    found = []
    for c in measurements.contenders:
        if c.is_ours or c.wsgi or c.key == "uvicorn":
            x = cell(measurements, c.key, UPSTREAM)
            if x:
                name = f"**{c.key}**" if c.is_ours else c.key
                found.append(f"{name} {x.rps:,.0f} req/s, p99 {_ms(x.p99_ms)} ms")
    return found


MIXED_NAMES = {UPSTREAM: "async view", LIVE: "probe", UPSTREAM_SYNC: "sync views"}


def _mixed_summary(measurements: Measurements) -> list[str]:
    found = []
    for c in mixed_contenders(measurements):
        parts = []
        for path in (UPSTREAM, LIVE, UPSTREAM_SYNC):
            m = mixed_cell(measurements, c.key, path)
            if m:
                parts.append(f"{MIXED_NAMES[path]} {m.rps:,.0f} req/s (p99 {_ms(m.p99_ms)} ms)")
            elif path == LIVE:
                parts.append("no probe")
        name = f"**{c.key}**" if c.is_ours else c.key
        found.append(f"{name}: " + ", ".join(parts))
    return found


# Tables ------------------------------------------------------------------------


def _mixed_intro(measurements: Measurements) -> list[str]:
    load = ", ".join(f"{count} connections on `{path}`" for path, count in MIXED_LOAD)
    return [
        f"All at once against one server: {load}. Requests per second / p99 in ms, "
        f"median of {_n(measurements.options.mixed_rounds, 'round')} of "
        f"{measurements.options.mixed_seconds} s; errors over every run, warm-up included.",
        "",
    ]


def _mixed_table(measurements: Measurements) -> list[str]:
    rows = []
    for c in mixed_contenders(measurements):
        row = [_name(c)]
        errors = 0
        for path, _ in MIXED_LOAD:
            m = mixed_cell(measurements, c.key, path)
            row.append(f"{m.rps:,.0f} / {_ms(m.p99_ms)}" if m else "n/a")
            errors += m.errors.total if m else 0
        row.append(f"**{errors}**" if errors else "0")
        rows.append(row)
    if not rows:
        return ["Not run.", ""]
    header = [
        "",
        *(f"`{path}` ({count} conn.): {ENDPOINT_NAMES[path]}" for path, count in MIXED_LOAD),
        "Errors",
    ]
    return _table(header, rows)


def _memory_table(measurements: Measurements) -> list[str]:
    rows = []
    for c in measurements.contenders:
        before = measurements.memory_before_upstream.get(c.key)
        peaks = measurements.memory.get(c.key)
        ready = measurements.ready_seconds.get(c.key)
        rows.append(
            [
                _name(c),
                _rss_pss(before),
                _rss_pss(peaks),
                f"{peaks.total_pss_kib / MIB:.0f}" if peaks else "n/a",
                f"{len(peaks.worker_pids)}" if peaks else "n/a",
                f"{statistics.median(ready):.2f}" if ready else "n/a",
            ]
        )
    return _table(
        [
            "",
            f"Peak RSS / PSS per worker (MiB), without `{UPSTREAM}`",
            "Peak RSS / PSS per worker (MiB), whole run",
            "Peak PSS, all processes (MiB), whole run",
            "Worker pids seen",
            "Start-to-ready (s)",
        ],
        rows,
    )


def _rss_pss(peaks: processes.MemoryPeaks | None) -> str:
    if peaks is None or not peaks.worker_pids:
        return "n/a"
    return f"{peaks.worker_rss_kib / MIB:.0f} / {peaks.worker_pss_kib / MIB:.0f}"


def _ratio_table(measurements: Measurements) -> list[str]:
    others = [*peers(measurements), *([ceiling(measurements)] if ceiling(measurements) else [])]
    rows = []
    for path in endpoints(measurements):
        row = [_path_header(measurements, path)]
        for other in others:
            found = ratio(measurements, other.key, path)  # type: ignore[union-attr]
            row.append(f"{_x(found.throughput)} ({_x(found.efficiency)})" if found else "n/a")
        rows.append(row)
    return _table(["", *(o.label for o in others)], rows)  # type: ignore[union-attr]


# Targets -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    verdict: str


def targets(measurements: Measurements) -> list[Target]:
    return [
        *_cpu_targets(measurements),
        *_features_targets(measurements),
        *_peer_targets(measurements),
        *_ceiling_target(measurements),
        *_upstream_targets(measurements),
        *_mixed_targets(measurements),
        *_memory_target(measurements),
        *(Target(*found) for found in overload.targets(measurements.overload)),
        _errors_target(measurements),
    ]


def _cpu_targets(measurements: Measurements) -> list[Target]:
    """Ours as deployed first, then with logs and metrics off, against gthread's CPU
    per request on each synchronous view; met only with a margin above the spread
    of the rounds."""
    wsgi = gthread(measurements)
    if wsgi is None:
        return []
    found = []
    for mine, how in ((DEPLOYED, "as deployed"), ("ours", "logs and metrics off")):
        for path in SYNC_VIEWS:
            versus = ratio(measurements, wsgi.key, path, mine=mine)
            ours_, theirs = cell(measurements, mine, path), cell(measurements, wsgi.key, path)
            if versus is None or ours_ is None or theirs is None:
                continue
            rounds = round_efficiencies(measurements, wsgi.key, path, mine=mine)
            spread = _spread(rounds)
            if versus.efficiency >= EFFICIENCY_MET + spread:
                verdict = "met"
            elif versus.efficiency >= EFFICIENCY_MET:
                verdict = "**met within the spread**: more rounds to settle it"
            elif versus.efficiency >= EFFICIENCY_NEAR:
                verdict = "**near**: explain"
            else:
                verdict = "**missed**"
            found.append(
                Target(
                    f"`{path}`, ours {how}: CPU per request at most gthread's "
                    f"(≥ {EFFICIENCY_MET:.2f}×)",
                    f"{_x(versus.efficiency)} (rounds {min(rounds):.2f}–{max(rounds):.2f}×, "
                    f"spread ±{spread:.2f}): ours {ours_.cpu_us:,.0f} µs, gthread "
                    f"{theirs.cpu_us:,.0f} µs ({_x(versus.throughput)} req/s)",
                    verdict,
                )
            )
    return found


def _features_targets(measurements: Measurements) -> list[Target]:
    """What the access log and the metrics cost together: ours as deployed against
    ours with both off."""
    found = []
    deployed, bare = cell(measurements, DEPLOYED, HELLO), cell(measurements, "ours", HELLO)
    if deployed and bare and bare.cpu_us:
        costs = [
            (a.cpu_us_per_request - b.cpu_us_per_request) / b.cpu_us_per_request
            for a, b in zip(
                measurements.runs[(DEPLOYED, HELLO)],
                measurements.runs[("ours", HELLO)],
                strict=False,
            )
        ]
        cost = deployed.cpu_us / bare.cpu_us - 1
        found.append(
            Target(
                f"`{HELLO}`: the access log and metrics cost ≤ {FEATURES_COST:.0%} of its CPU "
                "per request",
                f"{cost:+.1%} ({deployed.cpu_us - bare.cpu_us:+,.1f} µs: {deployed.cpu_us:,.0f} "
                f"against {bare.cpu_us:,.0f}; rounds {min(costs):+.1%} to {max(costs):+.1%})",
                "met" if cost <= FEATURES_COST else "**missed**",
            )
        )
    deployed, bare = cell(measurements, DEPLOYED, LIVE), cell(measurements, "ours", LIVE)
    if deployed and bare and bare.rps:
        share = deployed.rps / bare.rps
        by_cpu = bare.cpu_us / deployed.cpu_us if deployed.cpu_us else 0.0
        found.append(
            Target(
                f"`{LIVE}` as deployed ≥ {DEPLOYED_LIVE_SHARE:.2f}× its req/s with both off",
                f"{_x(share)} req/s, {_x(by_cpu)} by CPU per request",
                _verdict(share >= DEPLOYED_LIVE_SHARE, by_cpu >= DEPLOYED_LIVE_SHARE, "CPU"),
            )
        )
    return found


def _peer_targets(measurements: Measurements) -> list[Target]:
    found = []
    for path in DJANGO_VIEWS:
        compared = [
            (peer, versus)
            for peer in asgi_peers(measurements)
            if (versus := ratio(measurements, peer.key, path)) is not None
        ]
        if not compared:
            continue
        closest, versus = min(
            compared, key=lambda pair: min(pair[1].throughput, pair[1].efficiency)
        )
        ahead_by_both = [p.label for p, v in compared if v.throughput < 1 and v.efficiency < 1]
        ahead_by_one = [
            f"{p.label} ({'req/s' if v.throughput < 1 else 'CPU'})"
            for p, v in compared
            if (v.throughput < 1) != (v.efficiency < 1)
        ]
        if ahead_by_both:
            verdict = "**missed**: ahead: " + ", ".join(ahead_by_both)
        elif ahead_by_one:
            verdict = "**borderline**: ahead by one measure: " + ", ".join(ahead_by_one)
        else:
            verdict = "met"
        found.append(
            Target(
                f"`{path}`: no ASGI peer ahead of ours (req/s and CPU per request)",
                f"closest: {closest.label}, {_x(versus.throughput)} req/s, "
                f"{_x(versus.efficiency)} CPU",
                verdict,
            )
        )
    return found


def _ceiling_target(measurements: Measurements) -> list[Target]:
    top = ceiling(measurements)
    live = ratio(measurements, top.key, LIVE) if top else None
    if live is None:
        return []
    return [
        Target(
            f"`/health/live` ≥ {CEILING_SHARE:.0%} of the raw ASGI ceiling",
            f"{live.throughput:.0%} req/s, {live.efficiency:.0%} CPU",
            _verdict(live.throughput >= CEILING_SHARE, live.efficiency >= CEILING_SHARE, "CPU"),
        )
    ]


def _upstream_targets(measurements: Measurements) -> list[Target]:
    mine = cell(measurements, "ours", UPSTREAM)
    if mine is None:
        return []
    found = []
    for other in (gthread(measurements), contender(measurements, "uvicorn")):
        theirs = cell(measurements, other.key, UPSTREAM) if other else None
        if other is None or theirs is None or not theirs.rps:
            continue
        found.append(
            Target(
                f"`{UPSTREAM}` at {measurements.options.upstream_connections} connections: "
                f"ahead of {other.label} (req/s and p99)",
                f"ours {mine.rps:,.0f} req/s, p99 {_ms(mine.p99_ms)} ms; theirs "
                f"{theirs.rps:,.0f} req/s, p99 {_ms(theirs.p99_ms)} ms "
                f"({_x(mine.rps / theirs.rps)} req/s)",
                _verdict(mine.rps >= theirs.rps, mine.p99_ms <= theirs.p99_ms, "p99"),
            )
        )
    return found


def _mixed_targets(measurements: Measurements) -> list[Target]:
    me = ours(measurements)
    others = [c for c in mixed_contenders(measurements) if not c.is_ours]
    found = []
    mine = mixed_cell(measurements, me.key, UPSTREAM)
    if mine is not None:
        shown = [f"ours {mine.rps:,.0f} req/s, p99 {_ms(mine.p99_ms)} ms"]
        more, faster = True, True
        for other in others:
            theirs = mixed_cell(measurements, other.key, UPSTREAM)
            if theirs is None:
                continue
            shown.append(f"{other.key} {theirs.rps:,.0f}, {_ms(theirs.p99_ms)} ms")
            more = more and mine.rps >= theirs.rps
            faster = faster and mine.p99_ms <= theirs.p99_ms
        verdict = (
            f"**missed**: {mine.errors.describe()} errors"
            if mine.errors
            else _verdict(more, faster, "p99", what="every other contender")
        )
        against = ", ".join(o.key for o in others)
        found.append(
            Target(
                "Mixed load: the async view keeps answering while sync views saturate the "
                "threads" + (f" (req/s and p99 at least as good as {against})" if against else ""),
                "; ".join(shown),
                verdict,
            )
        )
    probe = mixed_cell(measurements, me.key, LIVE)
    if probe is not None:
        shown = [f"ours {probe.rps:,.0f} req/s, p99 {_ms(probe.p99_ms)} ms"]
        for other in others:
            theirs = mixed_cell(measurements, other.key, LIVE)
            shown.append(
                f"{other.key} {theirs.rps:,.0f}, {_ms(theirs.p99_ms)} ms"
                if theirs
                else f"{other.key} n/a (no probe)"
            )
        in_time = probe.p99_ms <= PROBE_TIMEOUT_SECONDS * 1000
        if probe.errors:
            verdict = f"**missed**: {probe.errors.describe()} errors"
        elif not in_time:
            verdict = f"**missed**: p99 above the probes' {PROBE_TIMEOUT_SECONDS} s timeout"
        else:
            verdict = "met"
        found.append(
            Target(
                "Mixed load: the liveness probe keeps answering (no errors, p99 within the "
                f"probes' {PROBE_TIMEOUT_SECONDS} s timeout)",
                "; ".join(shown),
                verdict,
            )
        )
    return found


def _memory_target(measurements: Measurements) -> list[Target]:
    found = []
    before = measurements.memory_before_upstream.get("ours")
    if before is not None and before.worker_pids:
        rss, pss = before.worker_rss_kib / MIB, before.worker_pss_kib / MIB
        over = [
            f"{name} +{round(value) - limit} MiB"
            for name, value, limit in (
                ("RSS", rss, PREVIOUS_WORKER_RSS_MIB),
                ("PSS", pss, PREVIOUS_WORKER_PSS_MIB),
            )
            if _above_previous(value, limit)
        ]
        found.append(
            Target(
                f"Memory per worker at most {PREVIOUS_WORKER_RSS_MIB} MiB RSS / "
                f"{PREVIOUS_WORKER_PSS_MIB} MiB PSS (the previous figures, same endpoints: "
                f"all but `{UPSTREAM}`)",
                f"{rss:.1f} MiB RSS, {pss:.1f} MiB PSS at peak",
                "**missed**: " + ", ".join(over) if over else "met (in whole MiB, as published)",
            )
        )
    peaks = measurements.memory.get("ours")
    if peaks is not None and peaks.worker_pids:
        found.append(
            Target(
                f"Memory per worker with `{UPSTREAM}` at "
                f"{measurements.options.upstream_connections} connections and the mixed load "
                "(no previous figure)",
                f"{peaks.worker_rss_kib / MIB:.0f} MiB RSS, "
                f"{peaks.worker_pss_kib / MIB:.0f} MiB PSS at peak",
                "reported",
            )
        )
    return found


def _errors_target(measurements: Measurements) -> Target:
    errors = total_errors(measurements)
    return Target(
        "Zero errors in every run (statuses ≥ 400 count)",
        str(errors) + (f" ({', '.join(errors_by_run(measurements))})" if errors else ""),
        "met" if errors == 0 else "**missed**",
    )


def _targets_table(measurements: Measurements) -> list[str]:
    return _table(
        ["Target", "Measured", ""],
        [[t.name, t.measured, t.verdict] for t in targets(measurements)],
    )


def _verdict(first: bool, second: bool, second_name: str, *, what: str = "") -> str:
    """Met only if req/s and the second measure agree: on a shared machine req/s
    alone can be lifted or sunk by a neighbour."""
    against = f" against {what}" if what else ""
    if first and second:
        return "met"
    if first or second:
        which = "req/s" if first else second_name
        return f"**borderline**: met by {which} only{against}"
    return f"**missed**{against}"


# Chart -----------------------------------------------------------------------


def chart(measurements: Measurements, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = endpoints(measurements)
    contenders = measurements.contenders
    colours = {c.key: plt.get_cmap("tab10")(index % 10) for index, c in enumerate(contenders)}
    figure, axes = plt.subplot_mosaic(
        [["rps", "rps", "cpu", "cpu", "p99", "p99"], ["mixed_rps"] * 3 + ["mixed_p99"] * 3],
        figsize=(18, 10.5),
        height_ratios=[1, 0.8],
    )
    labels = [
        f"{p}\n({measurements.options.connections_for(p)} conn.)"
        if measurements.options.connections_for(p) != measurements.options.connections
        else p
        for p in paths
    ]
    width = 0.8 / len(contenders)
    for key, metric, title in (
        ("rps", "rps", "Requests per second (higher is better)"),
        ("cpu", "cpu_us", "Server CPU per request, µs (lower is better)"),
        ("p99", "p99_ms", "Latency p99, ms (lower is better)"),
    ):
        axis = axes[key]
        for index, c in enumerate(contenders):
            xs, ys = [], []
            for position, endpoint in enumerate(paths):
                found = cell(measurements, c.key, endpoint)
                if found:
                    xs.append(position + (index - (len(contenders) - 1) / 2) * width)
                    ys.append(getattr(found, metric))
            axis.bar(xs, ys, width, label=c.label, **_bar_style(c, colours))
        axis.set_yscale("log")
        axis.set_xticks(range(len(paths)), labels, rotation=20, fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)
    _mixed_chart(measurements, axes["mixed_rps"], axes["mixed_p99"], colours)
    handles, names = axes["rps"].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=4, fontsize=9, frameon=False)
    figure.suptitle(
        f"Same Django project, {measurements.options.workers} worker on one core, "
        f"{measurements.started:%Y-%m-%d} (log scales)"
    )
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _bar_style(c: Contender, colours: dict[str, Any]) -> dict[str, Any]:
    return {
        "color": colours[c.key],
        "edgecolor": "black" if c.is_ours else "none",
        "linewidth": 1.5 if c.is_ours else 0,
        "hatch": "//" if c.is_ceiling else ".." if c.role == VARIANT else None,
    }


def _mixed_chart(
    measurements: Measurements, rps_axis: Any, p99_axis: Any, colours: dict[str, Any]
) -> None:
    shown = mixed_contenders(measurements)
    paths = [path for path, _ in MIXED_LOAD]
    labels = [f"{path}\n({count} conn.)" for path, count in MIXED_LOAD]
    for axis, metric, title in (
        (rps_axis, "rps", "Mixed load, all three at once: requests per second"),
        (p99_axis, "p99_ms", "Mixed load: latency p99, ms"),
    ):
        if not shown:
            axis.set_visible(False)
            continue
        width = 0.8 / len(shown)
        missing = []
        for index, c in enumerate(shown):
            xs, ys = [], []
            for position, path in enumerate(paths):
                x = position + (index - (len(shown) - 1) / 2) * width
                found = mixed_cell(measurements, c.key, path)
                if found:
                    xs.append(x)
                    ys.append(getattr(found, metric))
                else:
                    missing.append(x)
            axis.bar(xs, ys, width, **_bar_style(c, colours))
        for x in missing:  # a contender without that endpoint (gthread has no probe)
            axis.annotate(
                "n/a",
                (x, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="grey",
            )
        axis.set_yscale("log")
        axis.set_xticks(range(len(paths)), labels, fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)


# Output ----------------------------------------------------------------------


def write(measurements: Measurements, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    chart(measurements, directory / CHART)
    target = directory / "benchmarks.md"
    target.write_text(markdown(measurements))
    return target


def refresh_analysis(directory: Path) -> Path:
    """Copy bench/analysis.md into the report already written, in place of its
    analysis (everything after the Method section), leaving every measured figure
    as it was: the prose can be revised after reading a run without measuring
    again."""
    target = directory / "benchmarks.md"
    text = target.read_text()
    method = text.index("\n## Method\n")
    after_method = text.find("\n## ", method + 1)
    head = text[: after_method + 1] if after_method != -1 else text.rstrip("\n") + "\n\n"
    target.write_text(head + _analysis())
    return target


def console_summary(measurements: Measurements) -> str:
    others = [*peers(measurements), *([ceiling(measurements)] if ceiling(measurements) else [])]
    lines = ["", "Ours ÷ each peer: req/s ratio (CPU-efficiency ratio); above 1.00 ours is ahead"]
    lines.append(f"{'':<15}" + "".join(f"{o.key:>22}" for o in others))  # type: ignore[union-attr]
    for path in endpoints(measurements):
        row = f"{path:<15}"
        for other in others:
            found = ratio(measurements, other.key, path)  # type: ignore[union-attr]
            text = f"{found.throughput:.2f} ({found.efficiency:.2f})" if found else "n/a"
            row += f"{text:>22}"
        lines.append(row)
    shown = mixed_contenders(measurements)
    if shown:
        lines += ["", "Mixed load: req/s / p99 ms (all at once)"]
        lines.append(f"{'':<15}" + "".join(f"{f'{p} ×{n}':>28}" for p, n in MIXED_LOAD))
        for c in shown:
            row = f"{c.key:<15}"
            for path, _ in MIXED_LOAD:
                m = mixed_cell(measurements, c.key, path)
                text = f"{m.rps:,.0f} / {_ms(m.p99_ms)}" if m else "n/a"
                row += f"{text:>28}"
            lines.append(row)
    lines += ["", *_headline(measurements), "", "Targets:"]
    for t in targets(measurements):
        verdict, _, why = t.verdict.replace("**", "").partition(":")
        lines.append(f"- {t.name}: {t.measured} => {verdict.upper()}{':' if why else ''}{why}")
    lines.append(f"Total time: {measurements.elapsed_seconds / 60:.1f} min")
    return "\n".join(lines)
