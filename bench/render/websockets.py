"""docs/benchmarks-websockets.md: many open sockets on one worker and a broadcast's
fan-out, ours against Daphne and Uvicorn, from the results alone."""

from __future__ import annotations

from bench.render.tables import header, machine, table
from bench.results import WebSocketResults

TITLE = "Benchmark report: WebSockets"
LAYERS = ("in-memory", "redis")


def page(results: WebSocketResults) -> str:
    o = results.options
    labels = {c.key: c.label for c in results.contenders}
    memory = {(m.contender, m.deflate): m for m in results.memory}
    fan_out = {(x.contender, x.layer): x for x in results.fan_out}
    rows = []
    for c in results.contenders:
        deflate, plain = memory.get((c.key, True)), memory.get((c.key, False))
        rows.append(
            [
                labels[c.key],
                f"{deflate.per_socket_kib:.1f}" if deflate else "n/a",
                f"{plain.per_socket_kib:.1f}" if plain else "n/a",
                f"{deflate.loaded_kib / 1024:.0f} MiB" if deflate else "n/a",
                f"{plain.handshakes_per_second:,.0f}" if plain else "n/a",
            ]
        )
    broadcasts = [
        [
            labels[c.key],
            layer,
            f"{x.median_ms:,.1f} ms",
            f"{x.worst_ms:,.1f} ms",
            f"{x.server_cpu_seconds * 1000:,.1f} ms",
        ]
        for layer in LAYERS
        for c in results.contenders
        if (x := fan_out.get((c.key, layer)))
    ]
    what = (
        f"{o.sockets} sockets held on one worker; {o.rounds} broadcasts to "
        f"{o.broadcast_sockets} sockets per contender and channel layer. The method is in "
        "`bench/websockets.py`."
    )
    lines = [
        *header(TITLE, results.run, what),
        *table(["Contender", "What it serves"], [[c.label, c.note] for c in results.contenders]),
        f"## {o.sockets} open sockets on one worker",
        "",
        "The worker's RSS grown by the open sockets (each has exchanged one message), "
        "over the sockets; and how fast they were opened, "
        f"{o.open_batch} handshakes in flight at a time (this one client, on one core, "
        "bounds that rate as much as the server does).",
        "",
        *table(
            [
                "Contender",
                "KiB per socket, deflate offered (browsers)",
                "KiB per socket, no compression",
                "Worker RSS with the sockets open (deflate)",
                "Handshakes/s",
            ],
            rows,
            "---|---:|---:|---:|---:|",
        ),
        f"## A broadcast's fan-out to {o.broadcast_sockets} sockets",
        "",
        "One socket sends to the group (example/consumers.py, `BroadcastConsumer`); the "
        "time until the last of the sockets has the copy, and the server's CPU time per "
        "broadcast. The wall time includes this benchmark's one client reading every copy.",
        "",
        *table(
            ["Contender", "Layer", "Median", "Worst", "Server CPU per broadcast"],
            broadcasts,
            "---|---|---:|---:|---:|",
        ),
        *machine(results.run),
    ]
    return "\n".join(lines)
