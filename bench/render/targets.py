"""What the HTTP phase is held to (the Targets table) and where ours loses (the
headline): each with the numbers that decide it."""

from __future__ import annotations

from dataclasses import dataclass

from bench.contenders import DJANGO_VIEWS, HELLO, LIVE, SYNC_VIEWS, UPSTREAM
from bench.render.figures import Figures
from bench.render.tables import ms, times
from bench.results import Overload

# CPU per request against gthread on the synchronous views: at or above this
# efficiency (gthread's CPU per request ÷ ours) the target is met; between NEAR and
# MET it is near and wants explaining; below NEAR it is missed.
EFFICIENCY_MET = 1.00
EFFICIENCY_NEAR = 0.90
CEILING_SHARE = 0.70  # /health/live against the raw ASGI ceiling
# Ours as deployed (the access log and metrics on, their defaults) against ours with
# both off: what the two features may cost.
DEPLOYED = "ours-deployed"
# Ours traced (OpenTelemetry on, exporting to the benchmark's sink): every request,
# then one in ten. Reported, not held to a target: what a team pays is its choice.
TRACED = (("ours-traced", "every request sampled"), ("ours-traced-sampled", "1 in 10 sampled"))
FEATURES_COST = 0.05  # of /api/hello's CPU per request
DEPLOYED_LIVE_SHARE = 0.95  # of /health/live's req/s
# A probe answering later than this fails: every probe's timeoutSeconds in
# deploy/kubernetes/deployment.yaml.
PROBE_TIMEOUT_SECONDS = 2
REFUSAL_MS = 100  # overload: a refusal's median answer


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    verdict: str


def targets(f: Figures) -> list[Target]:
    return [
        *_cpu_targets(f),
        *_features_targets(f),
        *_peer_targets(f),
        *_ceiling_target(f),
        *_upstream_targets(f),
        *_mixed_targets(f),
        *_overload_targets(f.http.overload),
        _errors_target(f),
    ]


def verdict(first: bool, second: bool, second_name: str, *, what: str = "") -> str:
    """Met only if req/s and the second measure agree: on a shared machine req/s
    alone can be lifted or sunk by a neighbour."""
    against = f" against {what}" if what else ""
    if first and second:
        return "met"
    if first or second:
        which = "req/s" if first else second_name
        return f"**borderline**: met by {which} only{against}"
    return f"**missed**{against}"


def _cpu_targets(f: Figures) -> list[Target]:
    """Ours as deployed first, then with logs and metrics off, against gthread's CPU
    per request on each synchronous view; met only with a margin above the spread
    of the rounds."""
    wsgi = f.gthread
    if wsgi is None:
        return []
    found = []
    for mine, how in ((DEPLOYED, "as deployed"), ("ours", "logs and metrics off")):
        for path in SYNC_VIEWS:
            versus = f.ratio(wsgi.key, path, mine=mine)
            ours, theirs = f.cell(mine, path), f.cell(wsgi.key, path)
            if versus is None or ours is None or theirs is None:
                continue
            rounds = f.round_efficiencies(wsgi.key, path, mine=mine)
            spread = (max(rounds) - min(rounds)) / 2 if len(rounds) > 1 else 0.0
            if versus.efficiency >= EFFICIENCY_MET + spread:
                decided = "met"
            elif versus.efficiency >= EFFICIENCY_MET:
                decided = "**met within the spread**: more rounds to settle it"
            elif versus.efficiency >= EFFICIENCY_NEAR:
                decided = "**near**: explain"
            else:
                decided = "**missed**"
            found.append(
                Target(
                    f"`{path}`, ours {how}: CPU per request at most gthread's "
                    f"(≥ {EFFICIENCY_MET:.2f}×)",
                    f"{times(versus.efficiency)} (rounds {min(rounds):.2f}–{max(rounds):.2f}×, "
                    f"spread ±{spread:.2f}): ours {ours.cpu_us:,.0f} µs, gthread "
                    f"{theirs.cpu_us:,.0f} µs ({times(versus.throughput)} req/s)",
                    decided,
                )
            )
    return found


def _features_targets(f: Figures) -> list[Target]:
    """What the access log and the metrics cost together: ours as deployed against
    ours with both off."""
    found = []
    deployed, bare = f.cell(DEPLOYED, HELLO), f.cell("ours", HELLO)
    if deployed and bare and bare.cpu_us:
        costs = [
            (a.cpu_us_per_request - b.cpu_us_per_request) / b.cpu_us_per_request
            for a, b in zip(f.rounds[(DEPLOYED, HELLO)], f.rounds[("ours", HELLO)], strict=False)
            if b.cpu_us_per_request
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
    deployed, bare = f.cell(DEPLOYED, LIVE), f.cell("ours", LIVE)
    if deployed and bare and bare.rps:
        share = deployed.rps / bare.rps
        by_cpu = bare.cpu_us / deployed.cpu_us if deployed.cpu_us else 0.0
        found.append(
            Target(
                f"`{LIVE}` as deployed ≥ {DEPLOYED_LIVE_SHARE:.2f}× its req/s with both off",
                f"{times(share)} req/s, {times(by_cpu)} by CPU per request",
                verdict(share >= DEPLOYED_LIVE_SHARE, by_cpu >= DEPLOYED_LIVE_SHARE, "CPU"),
            )
        )
    return found


def _peer_targets(f: Figures) -> list[Target]:
    found = []
    for path in DJANGO_VIEWS:
        compared = [
            (peer, versus)
            for peer in f.asgi_peers
            if (versus := f.ratio(peer.key, path)) is not None
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
            decided = "**missed**: ahead: " + ", ".join(ahead_by_both)
        elif ahead_by_one:
            decided = "**borderline**: ahead by one measure: " + ", ".join(ahead_by_one)
        else:
            decided = "met"
        found.append(
            Target(
                f"`{path}`: no ASGI peer ahead of ours (req/s and CPU per request)",
                f"closest: {closest.label}, {times(versus.throughput)} req/s, "
                f"{times(versus.efficiency)} CPU",
                decided,
            )
        )
    return found


def _ceiling_target(f: Figures) -> list[Target]:
    live = f.ratio(f.ceiling.key, LIVE) if f.ceiling else None
    if live is None:
        return []
    return [
        Target(
            f"`/health/live` ≥ {CEILING_SHARE:.0%} of the raw ASGI ceiling",
            f"{live.throughput:.0%} req/s, {live.efficiency:.0%} CPU",
            verdict(live.throughput >= CEILING_SHARE, live.efficiency >= CEILING_SHARE, "CPU"),
        )
    ]


def _upstream_targets(f: Figures) -> list[Target]:
    mine = f.cell("ours", UPSTREAM)
    if mine is None:
        return []
    found = []
    for other in (f.gthread, f.contender("uvicorn")):
        theirs = f.cell(other.key, UPSTREAM) if other else None
        if other is None or theirs is None or not theirs.rps:
            continue
        found.append(
            Target(
                f"`{UPSTREAM}` at {f.options.upstream_connections} connections: "
                f"ahead of {other.label} (req/s and p99)",
                f"ours {mine.rps:,.0f} req/s, p99 {ms(mine.p99_ms)} ms; theirs "
                f"{theirs.rps:,.0f} req/s, p99 {ms(theirs.p99_ms)} ms "
                f"({times(mine.rps / theirs.rps)} req/s)",
                verdict(mine.rps >= theirs.rps, mine.p99_ms <= theirs.p99_ms, "p99"),
            )
        )
    return found


def _mixed_targets(f: Figures) -> list[Target]:
    others = [c for c in f.mixed_contenders if c.role != "ours"]
    found = []
    mine = f.mixed_cell(f.ours.key, UPSTREAM)
    if mine is not None:
        shown = [f"ours {mine.rps:,.0f} req/s, p99 {ms(mine.p99_ms)} ms"]
        more, faster = True, True
        for other in others:
            theirs = f.mixed_cell(other.key, UPSTREAM)
            if theirs is None:
                continue
            shown.append(f"{other.key} {theirs.rps:,.0f}, {ms(theirs.p99_ms)} ms")
            more = more and mine.rps >= theirs.rps
            faster = faster and mine.p99_ms <= theirs.p99_ms
        decided = (
            f"**missed**: {mine.errors.describe()} errors"
            if mine.errors
            else verdict(more, faster, "p99", what="every other contender")
        )
        against = ", ".join(o.key for o in others)
        found.append(
            Target(
                "Mixed load: the async view keeps answering while sync views saturate the "
                "threads" + (f" (req/s and p99 at least as good as {against})" if against else ""),
                "; ".join(shown),
                decided,
            )
        )
    probe = f.mixed_cell(f.ours.key, LIVE)
    if probe is not None:
        shown = [f"ours {probe.rps:,.0f} req/s, p99 {ms(probe.p99_ms)} ms"]
        for other in others:
            theirs = f.mixed_cell(other.key, LIVE)
            shown.append(
                f"{other.key} {theirs.rps:,.0f}, {ms(theirs.p99_ms)} ms"
                if theirs
                else f"{other.key} n/a (no probe)"
            )
        if probe.errors:
            decided = f"**missed**: {probe.errors.describe()} errors"
        elif probe.p99_ms > PROBE_TIMEOUT_SECONDS * 1000:
            decided = f"**missed**: p99 above the probes' {PROBE_TIMEOUT_SECONDS} s timeout"
        else:
            decided = "met"
        found.append(
            Target(
                "Mixed load: the liveness probe keeps answering (no errors, p99 within the "
                f"probes' {PROBE_TIMEOUT_SECONDS} s timeout)",
                "; ".join(shown),
                decided,
            )
        )
    return found


def _overload_targets(results: dict[str, Overload]) -> list[Target]:
    mine, theirs = results.get("ours"), results.get("gthread")
    if mine is None:
        return []
    p99, refusal = mine.p99_admitted_ms, mine.refusal_median_ms
    timeout_ms = mine.timeout_seconds * 1000
    found = [
        Target(
            f"Overload: admitted requests' p99 within the {mine.timeout_seconds:g} s timeout, "
            "none late",
            f"p99 {overload_ms(p99)}, {mine.late_or_failed:,} late or failed",
            "met"
            if p99 is not None and p99 < timeout_ms and not mine.late_or_failed
            else "**missed**",
        ),
        Target(
            f"Overload: a refusal answered in milliseconds (median < {REFUSAL_MS} ms)",
            f"{overload_ms(refusal)} over {mine.refused:,} refusals",
            "met" if refusal is not None and refusal < REFUSAL_MS else "**missed**",
        ),
    ]
    if theirs is not None:
        found.append(
            Target(
                "Overload: goodput at least gthread's",
                f"ours {mine.goodput_rps:,.0f} req/s, gthread {theirs.goodput_rps:,.0f} req/s",
                "met" if mine.goodput_rps >= theirs.goodput_rps else "**missed**",
            )
        )
    return found


def overload_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _errors_target(f: Figures) -> Target:
    errors = f.total_errors()
    return Target(
        "Zero errors in every run (statuses ≥ 400 count)",
        str(errors) + (f" ({', '.join(f.errors_by_run())})" if errors else ""),
        "met" if errors == 0 else "**missed**",
    )


def losses(f: Figures) -> list[str]:
    """Every comparison where a peer did better than ours, each with its numbers:
    req/s or CPU per request on each endpoint (p99 too on /api/upstream), req/s or
    p99 in the mixed load."""
    found: list[str] = []
    for path in f.endpoints:
        behind = []
        for other in f.peers:
            versus = f.ratio(other.key, path)
            if versus is None:
                continue
            by = []
            if versus.throughput < 1:
                by.append(f"{times(versus.throughput)} req/s")
            if versus.efficiency < 1:
                by.append(f"{times(versus.efficiency)} CPU")
            if path == UPSTREAM:
                mine, theirs = f.cell("ours", path), f.cell(other.key, path)
                if mine and theirs and mine.p99_ms > theirs.p99_ms:
                    by.append(f"p99 {mine.p99_ms:,.0f} ms against {theirs.p99_ms:,.0f} ms")
            if by:
                behind.append(f"{other.label}: {', '.join(by)}")
        if behind:
            found.append(f"`{path}`, behind " + "; ".join(behind))
    for path in f.ours.mixed_paths:
        mine = f.mixed_cell(f.ours.key, path)
        if mine is None:
            continue
        behind = []
        for other in f.mixed_contenders:
            theirs = f.mixed_cell(other.key, path)
            if other.role == "ours" or theirs is None:
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
    return found
