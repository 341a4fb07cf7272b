"""The hostile clients' section of docs/benchmarks.md: a worker's peak memory under
each attack and under all of them at once, ours beside Uvicorn and Daphne."""

from __future__ import annotations

from bench.render.tables import started, table
from bench.results import Attack, HostileResults

NAMES = {
    "bursts": "Compressed WebSocket bursts",
    "pings": "A ping flood, never reading",
    "pipelining": "HTTP pipelining, never reading",
    "slow-bodies": "Slow request bodies",
    "mix": "**All four at once**",
}


def describe(results: HostileResults) -> dict[str, str]:
    o = results.options
    return {
        "bursts": f"{o.burst_sockets} sockets, each sending {o.burst_messages} messages of a "
        "mebibyte of zeros, deflated to about a kilobyte each, and reading nothing",
        "pings": f"{o.ping_clients} sockets sending 125-byte pings as fast as the kernel takes "
        f"them, at most {o.ping_mib} MiB each, and never reading a pong",
        "pipelining": f"{o.pipeline_clients} connections pipelining `GET /api/hello`, at most "
        f"{o.pipeline_mib} MiB each, and reading nothing",
        "slow-bodies": f"{o.slow_bodies:,} POSTs whose 100-byte body comes a byte a second",
    }


def grown(attack: Attack | None) -> str:
    if attack is None:
        return "n/a"
    if attack.skipped:
        return f"not run: {attack.skipped}"
    left_out = f" (left out: {attack.note})" if attack.note and attack.attack != "mix" else ""
    return f"+{attack.grown_mib:,.0f} MiB{left_out}"


def section(results: HostileResults) -> list[str]:
    contenders = results.contenders
    found = {(a.contender, a.attack): a for a in results.attacks}
    names = list(dict.fromkeys(a.attack for a in results.attacks))
    o = results.options
    rows = [
        [NAMES.get(name, name), *(grown(found.get((c.key, name))) for c in contenders)]
        for name in names
    ]
    mix = [found.get((c.key, "mix")) for c in contenders]
    details = []
    for c, attack in zip(contenders, mix, strict=True):
        if attack is None or attack.skipped:
            continue
        details.append(
            [
                c.label,
                f"{attack.baseline_mib:.0f} MiB",
                f"{attack.peak_mib:,.0f} MiB",
                f"{attack.after_mib:,.0f} MiB",
                f"{attack.sent_mib:,.1f} MiB",
                f"{attack.others_ok} of {attack.others_asked}",
                f"{attack.others_slowest_ms:,.0f} ms" if attack.others_slowest_ms else "-",
                attack.note or "",
            ]
        )
    what = describe(results)
    return [
        "## Hostile clients: a worker's memory",
        "",
        f"Measured {started(results.run):%Y-%m-%d %H:%M} UTC in "
        f"{results.run.elapsed_seconds / 60:.1f} minutes, at {results.run.source}, on "
        f"{results.run.machine.cpu} ({results.run.machine.cores} cores). "
        "The worker's peak resident memory (`VmHWM`) grown over its memory before the "
        f"attack, each attack for {o.seconds:g} s against a freshly started server with one "
        "worker and its defaults, then all four at once (issue 29's clients, as the "
        "runtime's own tests make them: `bench/attackers.py`):",
        "",
        *(f"- **{NAMES[name]}**: {text}." for name, text in what.items()),
        "",
        *table(["", *(c.label for c in contenders)], rows),
        "All four at once, in detail: the worker's memory before, at its peak and once the "
        "attackers had gone (memory not given back stays); what the attackers sent "
        "(loopback's buffers hold megabytes of it, read or not); and another client's "
        "`GET /api/hello` every 0.2 s meanwhile, given 2 s each.",
        "",
        *table(
            [
                "Contender",
                "Before",
                "Peak",
                "After",
                "Sent by the attackers",
                "Other client answered",
                "Its slowest answer",
                "Left out",
            ],
            details,
        ),
        "Contenders: "
        + "; ".join(f"{c.label}: {c.note}" for c in contenders)
        + ". The WebSockets go to `/ws/echo/` (the example's echo consumer); a server that "
        "does not negotiate permessage-deflate cannot be sent compressed bursts. Bounded: "
        "every attacker stops at the deadline or its byte limit, on loopback.",
        "",
    ]
