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

from bench import machine
from bench.contenders import ENDPOINT_NAMES, HELLO, ITEMS, LIVE, PEER, VARIANT, Contender
from bench.session import Measurements
from harness import wrk

ANALYSIS = Path(__file__).with_name("analysis.md")
CHART = "benchmarks.png"
MIB = 1024


@dataclass(frozen=True)
class Cell:
    """One contender on one endpoint: the median round, every error."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: int
    others_share: float | None


def cell(measurements: Measurements, key: str, path: str) -> Cell | None:
    runs = measurements.runs.get((key, path))
    if not runs:
        return None
    shares = [run.others_share for run in runs if run.others_share is not None]
    return Cell(
        rps=statistics.median(run.wrk.rps for run in runs),
        p50_ms=statistics.median(run.wrk.p50_ms for run in runs),
        p99_ms=statistics.median(run.wrk.p99_ms for run in runs),
        cpu_us=statistics.median(run.cpu_us_per_request for run in runs),
        errors=sum(run.wrk.errors for run in runs) + measurements.warmup_errors.get((key, path), 0),
        others_share=statistics.median(shares) if shares else None,
    )


def ours(measurements: Measurements) -> Contender:
    return next(c for c in measurements.contenders if c.is_ours)


def peers(measurements: Measurements) -> list[Contender]:
    return [c for c in measurements.contenders if c.role == PEER]


def variants(measurements: Measurements) -> list[Contender]:
    return [c for c in measurements.contenders if c.role == VARIANT]


def ceiling(measurements: Measurements) -> Contender | None:
    return next((c for c in measurements.contenders if c.is_ceiling), None)


def endpoints(measurements: Measurements) -> list[str]:
    return list(dict.fromkeys(path for c in measurements.contenders for path in c.endpoints))


# Ratios ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """Ours against one other contender on one endpoint; above 1 means ours is ahead."""

    throughput: float  # our req/s ÷ theirs
    efficiency: float  # their CPU per request ÷ ours (the noise-robust view)


def ratio(measurements: Measurements, other: str, path: str) -> Ratio | None:
    mine, theirs = cell(measurements, "ours", path), cell(measurements, other, path)
    if mine is None or theirs is None or not theirs.rps or not mine.cpu_us:
        return None
    return Ratio(mine.rps / theirs.rps, theirs.cpu_us / mine.cpu_us)


def best_peer(measurements: Measurements, path: str) -> Contender | None:
    serving = [(c, cell(measurements, c.key, path)) for c in peers(measurements)]
    found = [(c, x) for c, x in serving if x is not None]
    return max(found, key=lambda pair: pair[1].rps)[0] if found else None


def against_best_peer(measurements: Measurements) -> list[tuple[str, Contender, Ratio]]:
    """The benchmark's target: ours against the best peer on each Django view."""
    found = []
    for path in (HELLO, ITEMS):
        best = best_peer(measurements, path)
        versus = ratio(measurements, best.key, path) if best else None
        if best and versus:
            found.append((path, best, versus))
    return found


def total_errors(measurements: Measurements) -> int:
    return sum(
        cell(measurements, c.key, path).errors  # type: ignore[union-attr]
        for c in measurements.contenders
        for path in c.endpoints
        if (c.key, path) in measurements.runs
    )


# Markdown --------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _per_endpoint(measurements: Measurements, show: Callable[[Cell], str]) -> list[str]:
    paths = endpoints(measurements)
    rows = []
    for contender in measurements.contenders:
        row = [_name(contender)]
        for path in paths:
            found = cell(measurements, contender.key, path)
            row.append(show(found) if found else "n/a")
        rows.append(row)
    return _table(["", *(f"`{path}`" for path in paths)], rows)


def _name(contender: Contender) -> str:
    return f"**{contender.label}**" if contender.is_ours else contender.label


def _x(value: float) -> str:
    return f"{value:.2f}×"


def _method(measurements: Measurements) -> list[str]:
    options = measurements.options
    server = _cpus(measurements.server_cpus)
    loader = _cpus(measurements.load_cpus)
    pinning = (
        f"servers pinned to CPU {server} (`taskset`), wrk, PostgreSQL and the harness to "
        f"CPU {loader}"
        if server
        else "only one CPU available: nothing pinned, so wrk competes with the server"
    )
    return [
        f"- **Workers:** {options.workers} per contender, every contender. With two cores, "
        "one serves and the other generates the load and runs PostgreSQL, so that a busy "
        "load generator or database never takes CPU from the server being measured. One "
        "worker on its own core is the unit that scales: N workers on N cores multiply "
        "it for every contender alike, so the ratios hold.",
        f"- **Pinning:** {pinning}.",
        f"- **Load:** `wrk` with 1 thread and {options.connections} keep-alive connections, "
        f"{options.seconds} s per run; {options.warmup_seconds} s of warm-up per contender "
        f"and endpoint first; then {options.rounds} rounds, interleaved (every contender on "
        "an endpoint in turn, then the next endpoint, then the next round) so drift hits "
        "all alike. Each number is the median of the rounds.",
        "- **Errors:** wrk's socket errors (connect, read, write, timeout) plus responses "
        "with a status of 400 or more, summed over every run including warm-up. Before "
        "any load, every endpoint must answer exactly 200 (no redirect counted as success).",
        "- **CPU per request:** the server's user + system CPU time (all its processes) "
        "during a run divided by the requests served. It hardly depends on what else runs "
        "on the machine, unlike req/s, and so is the fairer comparison on a shared host.",
        "- **Memory:** RSS and PSS of each worker process from `/proc/<pid>/smaps_rollup`, "
        "sampled every 0.25 s through warm-up and rounds; the peak is reported. PSS shares "
        "pages with the master fairly; *all processes* adds the master (or main process).",
        f"- **Start-to-ready:** from `exec` to the first 200 on `/health` (gthread: on "
        "`/api/items`, as it has no probes), each contender started alone, "
        f"{options.startup_rounds} times interleaved; the median.",
        "- **Same environment for all:** production settings (`config.settings`, DEBUG "
        "off), a random 67-character `DJANGO_SECRET_KEY`, "
        "`DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost`, `DJANGO_HTTPS=false` (plain http on "
        "loopback, so nothing redirects), `DATABASE_URL` to the benchmark's own PostgreSQL "
        "(psycopg pool, 1–5 connections per worker), `LOG_FORMAT=json`, `METRICS_PORT=0`. "
        "Ours reads its server settings from the environment; the peers get the equivalent "
        "ones on their command lines (`bench/contenders.py`).",
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
        f"![Requests per second and CPU per request]({CHART})",
        "",
        "## Headline",
        "",
        *_headline(measurements),
        "",
        "## Contenders",
        "",
        *_table(
            ["Contender", "How it runs"],
            [[_name(c), c.note] for c in measurements.contenders],
        ),
        "## Results",
        "",
        f"Requests per second, median of {options.rounds} rounds (higher is better):",
        "",
        *_per_endpoint(measurements, lambda x: f"{x.rps:,.0f}"),
        "Server CPU time per request, µs, median (lower is better; robust to other load "
        "on the machine):",
        "",
        *_per_endpoint(measurements, lambda x: f"{x.cpu_us:,.0f}"),
        f"Latency p50 / p99, ms, median (at {options.connections} connections):",
        "",
        *_per_endpoint(measurements, lambda x: f"{x.p50_ms:.2f} / {x.p99_ms:.1f}"),
        "Errors (socket errors + responses ≥ 400), all runs including warm-up:",
        "",
        *_per_endpoint(measurements, lambda x: f"**{x.errors}**" if x.errors else "0"),
        "Memory per worker and start-up:",
        "",
        *_memory_table(measurements),
        f"### Ours against each peer (×; above 1.00 means {me.label.split(':')[0]} is ahead)",
        "",
        "Each cell: req/s ratio (ours ÷ peer), then in brackets the CPU-efficiency ratio "
        "(peer's CPU per request ÷ ours).",
        "",
        *_ratio_table(measurements),
        "## Targets",
        "",
        *_targets_table(measurements),
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
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)


def _others_summary(measurements: Measurements) -> str:
    shares = [
        run.others_share
        for runs in measurements.runs.values()
        for run in runs
        if run.others_share is not None
    ]
    if not shares:
        return "the server core was not separated."
    return (
        "other processes used a median "
        f"{statistics.median(shares):.0%} (max {max(shares):.0%}) of the server's core "
        "during the measured runs (this machine is shared: the higher, the noisier req/s)."
    )


def _headline(measurements: Measurements) -> list[str]:
    lines = [
        f"- `{path}` ({ENDPOINT_NAMES[path]}): ours at **{_x(found.throughput)}** the "
        f"req/s of the best peer, {best.label} ({_x(found.efficiency)} by CPU per request)."
        for path, best, found in against_best_peer(measurements)
    ]
    for peer in peers(measurements):
        if peer.key == "gthread":
            continue
        values = [ratio(measurements, peer.key, p) for p in (HELLO, ITEMS)]
        values = [v for v in values if v]
        if values:
            lines.append(
                f"- Against {peer.label} on the Django views: "
                + ", ".join(f"{_x(v.throughput)} req/s ({_x(v.efficiency)} CPU)" for v in values)
                + " (`/api/hello`, `/api/items`)."
            )
    top = ceiling(measurements)
    live = ratio(measurements, top.key, LIVE) if top else None
    if live:
        lines.append(
            f"- `/health/live` at **{live.throughput:.0%}** of the raw ASGI ceiling's req/s "
            f"({live.efficiency:.0%} by CPU per request)."
        )
    for variant in variants(measurements):
        costs = []
        for path in (LIVE, HELLO):
            mine, theirs = cell(measurements, "ours", path), cell(measurements, variant.key, path)
            if mine and theirs:
                costs.append(f"{theirs.cpu_us - mine.cpu_us:+,.0f} µs CPU per request on `{path}`")
        if costs:
            lines.append(f"- {variant.label.capitalize()} against ours: " + ", ".join(costs) + ".")
    errors = total_errors(measurements)
    lines.append(
        f"- Errors in all runs: **{errors}**."
        if errors
        else "- No errors in any run (socket errors or statuses ≥ 400)."
    )
    return lines


def _memory_table(measurements: Measurements) -> list[str]:
    rows = []
    for contender in measurements.contenders:
        peaks = measurements.memory.get(contender.key)
        ready = measurements.ready_seconds.get(contender.key)
        rows.append(
            [
                _name(contender),
                f"{peaks.worker_rss_kib / MIB:.0f}" if peaks else "n/a",
                f"{peaks.worker_pss_kib / MIB:.0f}" if peaks else "n/a",
                f"{peaks.total_pss_kib / MIB:.0f}" if peaks else "n/a",
                f"{len(peaks.worker_pids)}" if peaks else "n/a",
                f"{statistics.median(ready):.2f}" if ready else "n/a",
            ]
        )
    return _table(
        [
            "",
            "Peak RSS / worker (MiB)",
            "Peak PSS / worker (MiB)",
            "Peak PSS, all processes (MiB)",
            "Worker pids seen",
            "Start-to-ready (s)",
        ],
        rows,
    )


def _ratio_table(measurements: Measurements) -> list[str]:
    others = [*peers(measurements), *([ceiling(measurements)] if ceiling(measurements) else [])]
    rows = []
    for path in endpoints(measurements):
        row = [f"`{path}`"]
        for other in others:
            found = ratio(measurements, other.key, path)  # type: ignore[union-attr]
            row.append(f"{_x(found.throughput)} ({_x(found.efficiency)})" if found else "n/a")
        rows.append(row)
    return _table(["", *(o.label for o in others)], rows)  # type: ignore[union-attr]


def _targets_table(measurements: Measurements) -> list[str]:
    rows = [
        [
            f"`{path}` ≥ 1.0× the best peer",
            f"{_x(found.throughput)} req/s, {_x(found.efficiency)} CPU vs {best.label}",
            _verdict(found.throughput >= 1.0, found.efficiency >= 1.0),
        ]
        for path, best, found in against_best_peer(measurements)
    ]
    top = ceiling(measurements)
    live = ratio(measurements, top.key, LIVE) if top else None
    if live:
        rows.append(
            [
                "`/health/live` ≥ 50% of the raw ASGI ceiling",
                f"{live.throughput:.0%} req/s, {live.efficiency:.0%} CPU",
                _verdict(live.throughput >= 0.5, live.efficiency >= 0.5),
            ]
        )
    peaks = measurements.memory.get("ours")
    ready = measurements.ready_seconds.get("ours")
    if peaks and ready:
        rows.append(
            [
                "Memory per worker and start-to-ready reported",
                f"{peaks.worker_pss_kib / MIB:.0f} MiB PSS per worker, ready in "
                f"{statistics.median(ready):.2f} s",
                "reported",
            ]
        )
    errors = total_errors(measurements)
    rows.append(["No errors in any run", str(errors), _verdict(errors == 0, errors == 0)])
    return _table(["Target", "Measured", ""], rows)


def _verdict(by_throughput: bool, by_cpu: bool) -> str:
    """Met only if req/s and CPU per request agree: on a shared machine req/s alone
    can be lifted or sunk by a neighbour."""
    if by_throughput and by_cpu:
        return "met"
    if by_throughput or by_cpu:
        which = "req/s" if by_throughput else "CPU per request"
        return f"**borderline**: met by {which} only; see below"
    return "**missed**: see below"


# Chart -----------------------------------------------------------------------


def chart(measurements: Measurements, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = endpoints(measurements)
    contenders = measurements.contenders
    figure, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    width = 0.8 / len(contenders)
    for axis, metric, title in (
        (axes[0], "rps", "Requests per second (higher is better)"),
        (axes[1], "cpu_us", "Server CPU per request, µs (lower is better)"),
    ):
        for index, contender in enumerate(contenders):
            xs, ys = [], []
            for position, endpoint in enumerate(paths):
                found = cell(measurements, contender.key, endpoint)
                if found:
                    xs.append(position + (index - (len(contenders) - 1) / 2) * width)
                    ys.append(getattr(found, metric))
            axis.bar(
                xs,
                ys,
                width,
                label=contender.label,
                edgecolor="black" if contender.is_ours else "none",
                linewidth=1.5 if contender.is_ours else 0,
                hatch="//" if contender.is_ceiling else ".." if contender.role == VARIANT else None,
            )
        axis.set_yscale("log")
        axis.set_xticks(range(len(paths)), paths, rotation=15)
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    figure.suptitle(
        f"Same Django project, {measurements.options.workers} worker on one core, "
        f"{measurements.started:%Y-%m-%d} (log scale)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# Output ----------------------------------------------------------------------


def write(measurements: Measurements, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    chart(measurements, directory / CHART)
    target = directory / "benchmarks.md"
    target.write_text(markdown(measurements))
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
    lines += ["", *_headline(measurements)]
    lines.append(f"Total time: {measurements.elapsed_seconds / 60:.1f} min")
    return "\n".join(lines)
