"""What README.md and docs/performance.md quote of the latest run, rendered from the
same results as the reports so the figures never drift: each between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``."""

from __future__ import annotations

import re
import statistics
import textwrap

from bench.contenders import ADMIN, HELLO, ITEMS, LIVE, SYNC_VIEWS, UPSTREAM, UPSTREAM_SYNC
from bench.render.figures import MIB, Figures
from bench.render.targets import DEPLOYED, TRACED, losses, overload_ms
from bench.results import Contender, HostileResults, Results, WebSocketResults

VIEW_NAMES = {HELLO: "the JSON view", ITEMS: "the database view", ADMIN: "the admin page"}
# How prose names a contender; its label otherwise, without what is in brackets.
SHORT_NAMES = {"ours": "ours", "gunicorn-asgi": "Gunicorn's ASGI worker", "gthread": "gthread"}
WIDTH = 86  # README's and docs/'s line length
NOISY = 0.10  # other processes' median share of the server's core, past which it is said


def about(value: float) -> str:
    """A ratio as prose says it: 7.04 is about 7, 1.76 about 1.8."""
    return f"{value:.0f}" if value >= 2.5 else f"{value:.1f}"


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with what stands between the block's markers replaced by ``content``."""
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- bench:{name} --> … <!-- /bench:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(2), text)


def _short(contender: Contender) -> str:
    return SHORT_NAMES.get(contender.key) or contender.label.split(" (")[0]


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _wrapped(text: str) -> str:
    """A paragraph or a bullet, wrapped as the documents are."""
    indent = "  " if text.startswith("- ") else ""
    return textwrap.fill(
        text, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def readme(f: Figures) -> str:
    """README's paragraph: ours as the image runs it, against gthread and the ASGI peers."""
    sentences = []
    wsgi = f.gthread
    found = [(p, r) for p in SYNC_VIEWS if wsgi and (r := f.ratio(wsgi.key, p, mine=DEPLOYED))]
    if found:
        efficiencies = [versus.efficiency for _, versus in found]
        how = (
            "less CPU than"
            if min(efficiencies) >= 1
            else "more CPU than"
            if max(efficiencies) < 1
            else "about the CPU it costs"
        )
        shown = ", ".join(f"{v.efficiency:.2f}x on {VIEW_NAMES[p]}" for p, v in found)
        sentences.append(
            f"a synchronous view costs {how} under Gunicorn's `gthread` ({shown}: gthread's "
            "CPU per request divided by ours)"
        )
    ahead = [
        f"about {about(min(ratios))}x"
        + (" their requests per second" if path == HELLO else "")
        + f" on {VIEW_NAMES[path]}"
        for path in (HELLO, ITEMS)
        if (ratios := [r.throughput for p in f.asgi_peers if (r := f.ratio(p.key, path))])
    ]
    if ahead:
        names = _and([_short(p) for p in f.asgi_peers])
        sentences.append(
            f"against {names} serving Django's own handler, ours serves " + " and ".join(ahead)
        )
    upstream = [r.throughput for p in f.peers if (r := f.ratio(p.key, UPSTREAM))]
    if upstream:
        sentences.append(
            f"an `async def` view awaiting a slow upstream serves about {about(min(upstream))}x "
            "the requests of every peer"
        )
    return _wrapped(
        f"Measured by `make bench` on {f.started:%Y-%m-%d} "
        "([Benchmarks](docs/performance.md)), as the image runs (access log and metrics "
        "on): " + "; ".join(sentences) + "."
    )


def summary(results: Results) -> str:
    """docs/performance.md's bullets: the latest run's figures that decide something."""
    lines = []
    if results.http:
        lines += _http(Figures(results.http))
    if results.websockets:
        lines += _websockets(results.websockets)
    if results.hostile:
        lines += _hostile(results.hostile)
    return "\n".join(_wrapped(line) for line in lines)


def _span(values: list[float]) -> str:
    low, high = f"{min(values):.1f}", f"{max(values):.1f}"
    return f"{low}×" if low == high else f"{low}–{high}×"


def _http(f: Figures) -> list[str]:
    shares = f.others_shares()
    noisy = (
        f"; other processes took a median {statistics.median(shares):.0%} of the server's "
        "core, so req/s are noisy and CPU per request is the figure to trust"
        if shares and statistics.median(shares) > NOISY
        else ""
    )
    found = [f"HTTP, {f.started:%Y-%m-%d} ([the report](benchmarks.md){noisy}):", ""]
    wsgi = f.gthread
    if wsgi:
        how = []
        for mine, when in (
            (DEPLOYED, "as deployed (access log and metrics on)"),
            ("ours", "with both off"),
        ):
            shown = [
                f"{r.efficiency:.2f}× on {VIEW_NAMES[p]}"
                for p in SYNC_VIEWS
                if (r := f.ratio(wsgi.key, p, mine=mine))
            ]
            if shown:
                how.append(f"{when} " + ", ".join(shown))
        found.append(
            "- **Synchronous views against `gthread`** (its CPU per request ÷ ours; above 1 "
            "ours uses less): " + "; ".join(how) + "."
        )
    deployed, bare = f.cell(DEPLOYED, HELLO), f.cell("ours", HELLO)
    if deployed and bare:
        live = [f.cell(DEPLOYED, LIVE), f.cell("ours", LIVE)]
        found.append(
            f"- **The access log and the metrics** cost the JSON view "
            f"{deployed.cpu_us - bare.cpu_us:+,.0f} µs of CPU per request "
            f"({deployed.cpu_us / bare.cpu_us - 1:+.1%})"
            + (
                f"; `/health/live` as deployed serves {live[0].rps / live[1].rps:.2f}× its "
                "requests per second with both off."
                if live[0] and live[1]
                else "."
            )
        )
    traced = [
        f"{cell.cpu_us - bare.cpu_us:+,.0f} µs ({cell.cpu_us / bare.cpu_us - 1:+.1%}) with " + how
        for key, how in TRACED
        if bare and (cell := f.cell(key, HELLO))
    ]
    if traced:
        found.append(
            "- **Tracing** (OpenTelemetry exporting to a local sink) costs the JSON view "
            + ", ".join(traced)
            + " of CPU per request, against ours with it off."
        )
    ahead = [
        f"{_span(ratios)}"
        + (" their requests per second" if path == HELLO else "")
        + f" on {VIEW_NAMES[path]}"
        for path in (HELLO, ITEMS, ADMIN)
        if (ratios := [r.throughput for p in f.asgi_peers if (r := f.ratio(p.key, path))])
    ]
    if ahead:
        names = _and([_short(p) for p in f.asgi_peers])
        found.append(
            f"- **Against {names} serving Django's own handler**, ours serves "
            + ", ".join(ahead)
            + "."
        )
    upstream = [
        f"{_short(c)} {x.rps:,.0f} req/s (p99 {x.p99_ms:,.0f} ms)"
        for c in f.contenders
        if (c.role == "ours" or c.wsgi or c.key == "uvicorn") and (x := f.cell(c.key, UPSTREAM))
    ]
    if upstream:
        found.append(
            f"- **An `async def` view awaiting a {f.http.upstream_delay_ms} ms upstream**, "
            f"{f.options.upstream_connections} connections: " + ", ".join(upstream) + "."
        )
    mixed = [f.mixed_cell("ours", path) for path in (UPSTREAM, LIVE, UPSTREAM_SYNC)]
    if all(mixed):
        a, probe, sync = mixed
        found.append(
            "- **Mixed load**, the synchronous views holding every thread: the async view "
            f"{a.rps:,.0f} req/s (p99 {a.p99_ms:,.0f} ms), `/health/live` p99 "  # type: ignore[union-attr]
            f"{probe.p99_ms:,.0f} ms; the synchronous views {sync.rps:,.0f} req/s, capped by "  # type: ignore[union-attr]
            "`GUNICORN_THREADS`."
        )
    mine, theirs = f.http.overload.get("ours"), f.http.overload.get("gthread")
    if mine:
        found.append(
            f"- **Overload at {mine.multiple:g}×** what the threads serve: the excess refused "
            f"with a 503 in {overload_ms(mine.refusal_median_ms)} (median), the admitted "
            f"answered within {overload_ms(mine.p99_admitted_ms)} (p99; the timeout is "
            f"{mine.timeout_seconds:g} s); goodput {mine.goodput_rps:,.0f} req/s"
            + (f" against gthread's {theirs.goodput_rps:,.0f}." if theirs else ".")
        )
    memory = [
        f"{_short(c)} {peak.worker_rss_kib / MIB:,.0f}"
        for c in [f.ours, *f.peers]
        if (peak := f.http.memory.get(c.key))
    ]
    if memory:
        found.append(
            "- **Memory per worker** (peak RSS over the whole run, MiB): " + ", ".join(memory) + "."
        )
    behind = losses(f)
    found.append(
        "- **Where ours loses**: " + "; ".join(behind) + "."
        if behind
        else "- Ours is behind no peer on any endpoint or in the mixed load."
    )
    return [*found, ""]


def _websockets(w: WebSocketResults) -> list[str]:
    labels = {c.key: _short(c) for c in w.contenders}
    memory = {(m.contender, m.deflate): m for m in w.memory}
    per_socket = [
        f"{labels[c.key]} {plain.per_socket_kib:.0f} KiB ({deflate.per_socket_kib:.0f} with "
        "permessage-deflate offered)"
        for c in w.contenders
        if (plain := memory.get((c.key, False))) and (deflate := memory.get((c.key, True)))
    ]
    medians = {(x.contender, x.layer): x.median_ms for x in w.fan_out}
    fan_out = [
        f"{labels[c.key]} {memory_layer:,.0f} / {redis:,.0f} ms"
        for c in w.contenders
        if (memory_layer := medians.get((c.key, "in-memory"))) is not None
        and (redis := medians.get((c.key, "redis"))) is not None
    ]
    started = w.run.started[:10]
    return [
        f"WebSockets, {started} ([the report](benchmarks-websockets.md)):",
        "",
        f"- **Memory per open socket**, {w.options.sockets} on one worker: "
        + ", ".join(per_socket)
        + ".",
        f"- **A broadcast to {w.options.broadcast_sockets} sockets**, the median through "
        "the in-memory layer / Redis: " + ", ".join(fan_out) + ".",
        "",
    ]


def _hostile(h: HostileResults) -> list[str]:
    labels = {c.key: _short(c) for c in h.contenders}
    mix = [
        f"{labels[a.contender]} +{a.grown_mib:,.0f} MiB"
        + (f" ({a.others_ok} of {a.others_asked} other requests answered)")
        for a in h.attacks
        if a.attack == "mix" and not a.skipped
    ]
    return [
        f"Hostile clients, {h.run.started[:10]} "
        "([the report](benchmarks.md#hostile-clients-a-workers-memory)):",
        "",
        "- **A worker's peak memory under all four attacks at once** (compressed WebSocket "
        "bursts, a ping flood, HTTP pipelining and slow bodies, none reading): "
        + ", ".join(mix)
        + ".",
        "",
    ]
