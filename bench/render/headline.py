"""The HTTP report's headline: every comparison that decides something, in a few
lines, each with its numbers."""

from __future__ import annotations

from bench.contenders import DJANGO_VIEWS, HELLO, LIVE, SYNC_VIEWS, UPSTREAM, UPSTREAM_SYNC
from bench.render.figures import Figures
from bench.render.tables import ms, times
from bench.render.targets import DEPLOYED, losses

MIXED_NAMES = {UPSTREAM: "async view", LIVE: "probe", UPSTREAM_SYNC: "sync views"}


def lines(f: Figures) -> list[str]:
    found = []
    wsgi = f.gthread
    for mine, how in (
        (DEPLOYED, "as deployed (access log and metrics on)"),
        ("ours", "with logs and metrics off"),
    ):
        parts = []
        for path in SYNC_VIEWS if wsgi else ():
            versus = f.ratio(wsgi.key, path, mine=mine)  # type: ignore[union-attr]
            ours, theirs = f.cell(mine, path), f.cell(wsgi.key, path)  # type: ignore[union-attr]
            if versus and ours and theirs:
                parts.append(
                    f"`{path}` **{times(versus.efficiency)}** ({ours.cpu_us:,.0f} against "
                    f"{theirs.cpu_us:,.0f} µs; {times(versus.throughput)} req/s)"
                )
        if parts:
            found.append(
                f"- Ours {how}, CPU per request against {wsgi.label} on the synchronous "  # type: ignore[union-attr]
                "views (its CPU ÷ ours; above 1.00× ours uses less): " + ", ".join(parts) + "."
            )
    for peer in f.asgi_peers:
        values = [(path, f.ratio(peer.key, path)) for path in DJANGO_VIEWS]
        shown = [
            f"`{path}` {times(v.throughput)} ({times(v.efficiency)})" for path, v in values if v
        ]
        if shown:
            found.append(
                f"- Against {peer.label} on Django's views, req/s (CPU): " + ", ".join(shown) + "."
            )
    live = f.ratio(f.ceiling.key, LIVE) if f.ceiling else None
    if live:
        found.append(
            f"- `/health/live` at **{live.throughput:.0%}** of the raw ASGI ceiling's req/s "
            f"({live.efficiency:.0%} by CPU per request)."
        )
    upstream = _upstream(f)
    if upstream:
        found.append(
            f"- `{UPSTREAM}` at {f.options.upstream_connections} connections (req/s, p99): "
            + "; ".join(upstream)
            + "."
        )
    mixed = _mixed(f)
    if mixed:
        found.append(
            "- Mixed load (sync views saturating the threads, at once with the async view "
            "and the probe): " + "; ".join(mixed) + "."
        )
    for variant in f.variants:
        costs = []
        for path in (LIVE, HELLO, UPSTREAM):
            mine, theirs = f.cell("ours", path), f.cell(variant.key, path)
            if mine and theirs:
                costs.append(
                    f"{theirs.cpu_us - mine.cpu_us:+,.0f} µs CPU per request and "
                    f"{theirs.rps / mine.rps:.2f}× req/s on `{path}`"
                )
        if costs:
            found.append(f"- {variant.label.capitalize()} against ours: " + ", ".join(costs) + ".")
    behind = losses(f)
    if behind:
        found.append("- **Where ours loses:**")
        found += [f"  - {item}" for item in behind]
    else:
        found.append("- Ours is behind no peer on any endpoint or in the mixed load.")
    replaced = f.replaced_workers()
    if replaced:
        found.append(
            f"- **More worker pids than workers** ({', '.join(replaced)}): a worker was "
            "replaced, or another child forked, during the load; see the server's log."
        )
    errors = f.total_errors()
    found.append(
        f"- **Errors in all runs: {errors}** (" + ", ".join(f.errors_by_run()) + ")."
        if errors
        else "- No errors in any run (socket errors or statuses ≥ 400)."
    )
    return found


def _upstream(f: Figures) -> list[str]:
    found = []
    for c in f.contenders:
        if c.role == "ours" or c.wsgi or c.key == "uvicorn":
            x = f.cell(c.key, UPSTREAM)
            if x:
                label = f"**{c.key}**" if c.role == "ours" else c.key
                found.append(f"{label} {x.rps:,.0f} req/s, p99 {ms(x.p99_ms)} ms")
    return found


def _mixed(f: Figures) -> list[str]:
    found = []
    for c in f.mixed_contenders:
        parts = []
        for path in (UPSTREAM, LIVE, UPSTREAM_SYNC):
            m = f.mixed_cell(c.key, path)
            if m:
                parts.append(f"{MIXED_NAMES[path]} {m.rps:,.0f} req/s (p99 {ms(m.p99_ms)} ms)")
            elif path == LIVE:
                parts.append("no probe")
        label = f"**{c.key}**" if c.role == "ours" else c.key
        found.append(f"{label}: " + ", ".join(parts))
    return found
