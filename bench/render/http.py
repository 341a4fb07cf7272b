"""docs/benchmarks.md: the HTTP phase's tables, targets and method, and the hostile
clients' section (``render/hostile.py``), from the results alone."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.contenders import UPSTREAM
from bench.database import ITEMS
from bench.render import headline, hostile
from bench.render.figures import MIB, Cell, Figures
from bench.render.tables import count, header, machine, ms, table, times
from bench.render.targets import PROBE_TIMEOUT_SECONDS, overload_ms, targets
from bench.results import Contender, MemoryPeak, Results

CHART = "benchmarks.png"
TITLE = "Benchmark report: HTTP"


def page(results: Results) -> str:
    if results.http is None:
        assert results.hostile is not None
        lines = header(TITLE, results.hostile.run, "hostile clients only (no HTTP phase).")
        return "\n".join([*lines, *hostile.section(results.hostile)])
    f = Figures(results.http)
    options = f.options
    what = (
        f"the same Django project served by each contender with {count(options.workers, 'worker')}"
        ", side by side."
    )
    lines = [
        *header(TITLE, f.http.run, what),
        f"![Requests per second, CPU per request, p99 and the mixed load]({CHART})",
        "",
        "## Headline",
        "",
        *headline.lines(f),
        "",
        "## Targets",
        "",
        *table(["Target", "Measured", ""], [[t.name, t.measured, t.verdict] for t in targets(f)]),
        f"A probe that answers after its `timeoutSeconds` ({PROBE_TIMEOUT_SECONDS} s in "
        "`deploy/kubernetes/deployment.yaml`) has failed.",
        "",
        "## Contenders",
        "",
        *table(["Contender", "How it runs"], [[name(c), c.note] for c in f.contenders]),
        "## Results",
        "",
        "Endpoints: "
        + "; ".join(f"`{path}` {f.http.endpoint_names[path]}" for path in f.endpoints)
        + ".",
        "",
        f"Requests per second, median of {count(options.rounds, 'round')} (higher is better):",
        "",
        *_per_endpoint(f, lambda x: f"{x.rps:,.0f}"),
        "Server CPU time per request, µs, median (lower is better; robust to other load "
        "on the machine):",
        "",
        *_per_endpoint(f, lambda x: f"{x.cpu_us:,.0f}"),
        f"Latency p50 / p99, ms, median (at {options.connections} connections, "
        f"{options.upstream_connections} on `{UPSTREAM}`):",
        "",
        *_per_endpoint(f, lambda x: f"{x.p50_ms:.2f} / {x.p99_ms:.1f}"),
        "Errors (socket errors + responses ≥ 400), all runs including warm-up:",
        "",
        *_per_endpoint(f, lambda x: f"**{x.errors.total}**" if x.errors else "0"),
        "### Mixed load",
        "",
        *_mixed(f),
        "### Overload",
        "",
        *_overload(f),
        "### Memory per worker and start-up",
        "",
        *_memory(f),
        "### Ours against each peer (×; above 1.00 means ours is ahead)",
        "",
        "Each cell: req/s ratio (ours ÷ peer), then in brackets the CPU-efficiency ratio "
        "(peer's CPU per request ÷ ours).",
        "",
        *_ratios(f),
        *(hostile.section(results.hostile) if results.hostile else []),
        *machine(f.http.run, _others(f)),
        "## Method",
        "",
        *_method(f),
    ]
    return "\n".join(lines) + "\n"


def name(c: Contender) -> str:
    return f"**{c.label}**" if c.role == "ours" else c.label


def path_header(f: Figures, path: str) -> str:
    connections = f.connections_for(path)
    return (
        f"`{path}`" if connections == f.options.connections else f"`{path}` ({connections} conn.)"
    )


def _per_endpoint(f: Figures, show: Callable[[Cell], str]) -> list[str]:
    rows = []
    for c in f.contenders:
        found = [f.cell(c.key, path) for path in f.endpoints]
        rows.append([name(c), *(show(x) if x else "n/a" for x in found)])
    return table(["", *(path_header(f, path) for path in f.endpoints)], rows)


def _mixed(f: Figures) -> list[str]:
    load = ", ".join(f"{n} connections on `{path}`" for path, n in f.http.mixed_load)
    rows = []
    for c in f.mixed_contenders:
        row, errors = [name(c)], 0
        for path in f.mixed_paths:
            m = f.mixed_cell(c.key, path)
            row.append(f"{m.rps:,.0f} / {ms(m.p99_ms)}" if m else "n/a")
            errors += m.errors.total if m else 0
        rows.append([*row, f"**{errors}**" if errors else "0"])
    if not rows:
        return ["Not run.", ""]
    columns = [f"`{p}` ({n} conn.): {f.http.endpoint_names[p]}" for p, n in f.http.mixed_load]
    return [
        f"All at once against one server: {load}. Requests per second / p99 in ms, "
        f"median of {count(f.options.mixed_rounds, 'round')} of {f.options.mixed_seconds} s; "
        "errors over every run, warm-up included.",
        "",
        *table(["", *columns, "Errors"], rows),
    ]


def _overload(f: Figures) -> list[str]:
    if not f.http.overload:
        return ["Not run.", ""]
    first = next(iter(f.http.overload.values()))
    rows = []
    for key, result in f.http.overload.items():
        statuses = ", ".join(f"{status}: {n:,}" for status, n in sorted(result.statuses.items()))
        contender = f.contender(key)
        rows.append(
            [
                name(contender) if contender else key,
                f"{result.goodput_rps:,.0f} req/s",
                overload_ms(result.p99_admitted_ms),
                f"{result.refused:,}",
                overload_ms(result.refusal_median_ms),
                f"{result.late_or_failed:,}",
                statuses,
            ]
        )
    return [
        f"`{first.path}` offered at {first.offered_rps:,.0f} req/s ({first.multiple:g}× what "
        f"the workers' {first.threads} threads serve) for {first.seconds:g} s, whatever the "
        f"answers; `GUNICORN_TIMEOUT={first.timeout_seconds:g}`. Goodput: 200s within the "
        "timeout, per second.",
        "",
        *table(
            [
                "Contender",
                "Goodput",
                "p99 of admitted",
                "Refused (503)",
                "Time to a refusal, median",
                "Late (200 after the timeout) or failed",
                "Statuses",
            ],
            rows,
        ),
    ]


def _memory(f: Figures) -> list[str]:
    rows = []
    for c in f.contenders:
        peak = f.http.memory.get(c.key)
        ready = f.http.ready_seconds.get(c.key)
        rows.append(
            [
                name(c),
                _rss_pss(f.http.memory_without_upstream.get(c.key)),
                _rss_pss(peak),
                f"{peak.total_pss_kib / MIB:.0f}" if peak else "n/a",
                f"{peak.worker_pids}" if peak else "n/a",
                f"{statistics.median(ready):.2f}" if ready else "n/a",
            ]
        )
    return table(
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


def _rss_pss(peak: MemoryPeak | None) -> str:
    if peak is None or not peak.worker_pids:
        return "n/a"
    return f"{peak.worker_rss_kib / MIB:.0f} / {peak.worker_pss_kib / MIB:.0f}"


def _ratios(f: Figures) -> list[str]:
    others = [*f.peers, *([f.ceiling] if f.ceiling else [])]
    rows = []
    for path in f.endpoints:
        found = [f.ratio(other.key, path) for other in others]
        rows.append(
            [
                path_header(f, path),
                *(f"{times(x.throughput)} ({times(x.efficiency)})" if x else "n/a" for x in found),
            ]
        )
    return table(["", *(o.label for o in others)], rows)


def _others(f: Figures) -> str:
    shares = f.others_shares()
    if not shares:
        return "the server core was not separated."
    mixed = f.http.mixed_others_shares
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


def _method(f: Figures) -> list[str]:
    options = f.options
    server = ",".join(map(str, f.http.server_cpus))
    loader = ",".join(map(str, f.http.load_cpus))
    pinning = (
        f"servers pinned to CPU {server} (`taskset`), wrk, PostgreSQL, the upstream "
        f"stand-in and the harness to CPU {loader}"
        if server
        else "only one CPU available: nothing pinned, so wrk competes with the server"
    )
    mixed = ", ".join(f"{n} connections on `{path}`" for path, n in f.http.mixed_load)
    return [
        f"- **Workers:** {options.workers} per contender, every contender. With two cores, "
        "one serves and the other generates the load and runs PostgreSQL, so that a busy "
        "load generator or database never takes CPU from the server being measured. One "
        "worker on its own core is the unit that scales: N workers on N cores multiply "
        "it for every contender alike, so the ratios hold.",
        f"- **Pinning:** {pinning}.",
        "- **What the ASGI peers serve:** `bench.stock:application`, i.e. Django's own "
        "`ASGIHandler` (`get_asgi_application()`) inside the same probes, request-timeout "
        f"and observer layers as ours (`{f.http.stock_layers}`, the runtime's own "
        "composition of them): what a team gets by pointing Uvicorn, Gunicorn's `-k asgi` "
        "or Granian at its Django project. Ours serves `config.asgi:application`, the same "
        "layers around the runtime's request path (one visit to a thread per request). So "
        "on Django's views the peers differ from ours in the server *and* in Django's "
        "request path; the *Granian serving our application* row separates the two. Only "
        "ours sets a request timeout (our worker tells the layer Gunicorn's timeout); "
        "elsewhere `RequestTimeout` passes requests through.",
        f"- **Load:** `wrk` with 1 thread and {options.connections} keep-alive connections "
        f"({options.upstream_connections} on `{UPSTREAM}`, where the work is waiting), "
        f"{options.seconds} s per run ({options.upstream_seconds} s on `{UPSTREAM}`: see "
        f"*Latency*); {options.warmup_seconds} s of warm-up per contender and endpoint "
        f"first; then {count(options.rounds, 'round')}, interleaved (every contender on an "
        "endpoint in turn, then the next endpoint, then the next round) so drift hits all "
        f"alike. `{UPSTREAM}`'s warm-up and rounds come after the other endpoints', so that "
        "memory can be read without and with it. Each number is the median of the rounds. "
        "After each run the harness waits until the server uses less than a tenth of its "
        "core (at most 15 s), so requests it still had queued are not served during the "
        "next contender's run.",
        "- **The upstream:** `/api/upstream` (an `async def` view, aiohttp) and "
        "`/api/upstream/sync` (a synchronous view, urllib, holding its thread) call one "
        "stand-in service, `uvicorn example.upstream:app` (uvloop + httptools, no access "
        "log, lifespan off), started once for the session on the load CPU; every "
        "contender gets `EXAMPLE_UPSTREAM_URL=http://127.0.0.1:<port>/quote?delay_ms="
        f"{f.http.upstream_delay_ms}`, so each call waits {f.http.upstream_delay_ms} ms. "
        "Under gthread the async view runs through Django's WSGI handler (`async_to_sync`) "
        f"in its {f.http.gthread_threads} threads.",
        f"- **Mixed load:** after the rounds, {mixed}, at once (one `wrk` per path; "
        f"gthread has no probe, so two), for {options.mixed_seconds} s, "
        f"{count(options.mixed_rounds, 'round')} interleaved after {options.warmup_seconds} s "
        "of warm-up; the median round. The synchronous views keep every thread of ours and "
        "gthread's busy waiting on the upstream: the question is whether the async view and "
        "the probe still answer.",
        "- **Latency:** wrk's p50 and p99 of the requests that completed within the run. "
        "Where a contender serves few requests per second for many connections, requests "
        "still queued when the run ends are not counted, so its p99 is then a lower bound. "
        f"That is why runs on `{UPSTREAM}` are longer: with {options.upstream_connections} "
        "connections a contender that takes seconds per request completes none in a short "
        "run. Even so, a contender whose requests take L seconds completes nothing in a "
        f"run's first L seconds, so its req/s is understated by about L ÷ "
        f"{options.upstream_seconds} (compare its p50).",
        f"- **Errors:** wrk's socket errors (connect, read, write, timeout after "
        f"{options.wrk_timeout_seconds} s) plus responses with a status of 400 or more, "
        "summed over every run including warm-up. Before any load, every endpoint must "
        "answer exactly 200 (no redirect counted as success).",
        "- **CPU per request:** the server's user + system CPU time (all its processes) "
        "during a run divided by the requests served. It hardly depends on what else runs "
        "on the machine, unlike req/s, and so is the fairer comparison on a shared host.",
        "- **Memory:** RSS and PSS of each worker process from `/proc/<pid>/smaps_rollup`, "
        "sampled every 0.25 s through warm-up, rounds and the mixed load; the peak is "
        f"reported, once for the endpoints other than `{UPSTREAM}` and once for the whole "
        f"run, which adds the threads that {options.upstream_connections} connections on "
        f"`{UPSTREAM}` and the mixed load make. PSS shares pages with the master fairly; "
        "*all processes* adds the master (or main process).",
        "- **Start-to-ready:** from `exec` to the first 200 on `/health` (gthread: on "
        "`/api/items`, as it has no probes), each contender started alone, "
        f"{count(options.startup_rounds, 'time')} interleaved; the median.",
        "- **Same environment for all:** production settings (`config.settings`, DEBUG "
        "off), a random `DJANGO_SECRET_KEY`, `DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost`, "
        "`DJANGO_HTTPS=false` (plain http on loopback, so nothing redirects), "
        "`DATABASE_URL` to the benchmark's own PostgreSQL (psycopg pool, 1–5 connections "
        "per worker), `EXAMPLE_UPSTREAM_URL` as above, `LOG_FORMAT=json`, `METRICS_PORT=0`. "
        "Ours reads its server settings from the environment; the peers get the equivalent "
        "ones on their command lines (`bench/contenders.py`).",
        "- **Access logs off, for everyone** (`GUNICORN_ACCESS_LOG=false`, "
        "`--no-access-log`, Gunicorn's default of none), but in *ours as deployed*: writing "
        "a line per request measures the log pipe, not the server, and each server formats "
        "differently. Application logs stay on (JSON); nothing logs per request.",
        "- **`/health` with its default `HEALTH_CACHE_SECONDS=1`**, as deployed: the probe "
        "checks PostgreSQL at most once a second per worker and otherwise answers from the "
        "cache, so this measures the probe path, not PostgreSQL's connection set-up.",
        f"- **Database:** a throw-away PostgreSQL cluster on loopback, migrated, with {ITEMS} "
        "`example.Item` rows; `/api/items` reads the latest 10.",
        "",
    ]
