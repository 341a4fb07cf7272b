"""``python -m bench``: measure, write the results as JSON, render the reports from it.

Phases, in order: ``http`` (bench/session.py), ``websockets`` (bench/websockets.py),
``hostile`` (bench/hostile.py). A run writes ``benchmarks.json`` into ``--output``
(docs/ by default), keeping from the file already there any phase it did not run,
then renders every report from that file alone (bench/render/). ``--report FILE``
measures nothing: it renders FILE's reports, as a run would have.

Ctrl+C or SIGTERM stops it cleanly: every server, wrk, the upstream stand-in, Redis
and PostgreSQL it started are stopped on the way out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench import hostile, render, results, websockets
from bench.contenders import CONTENDERS
from bench.results import HostileOptions, HttpOptions, Results, WebSocketOptions
from bench.session import Session, environment, plan_cpus, say

RESULTS = "benchmarks.json"
PHASES = ("http", "websockets", "hostile")
# --quick: every phase and contender, in a few minutes; figures too short to publish.
QUICK = {
    "rounds": 1,
    "startup_rounds": 1,
    "seconds": 1,
    "upstream_seconds": 2,
    "mixed_seconds": 2,
    "mixed_rounds": 1,
    "overload_seconds": 3,
    "sockets": 200,
    "broadcast_sockets": 100,
    "broadcasts": 3,
    "hostile_seconds": 3,
}


def parser() -> argparse.ArgumentParser:
    http, sockets, attacks = HttpOptions(), WebSocketOptions(), HostileOptions()
    found = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    found.add_argument(
        "--report", type=Path, metavar="FILE", help="measure nothing: render FILE's reports"
    )
    found.add_argument(
        "--output", type=Path, help="where the results and reports go (docs/ by default)"
    )
    found.add_argument(
        "--phase", action="append", choices=PHASES, help="run only these phases (repeatable)"
    )
    found.add_argument(
        "--quick", action="store_true", help="short everything: a smoke run, not for docs/"
    )
    found.add_argument(
        "--no-chart", action="store_true", help="render no chart (matplotlib is not needed)"
    )
    found.add_argument(
        "--only",
        action="append",
        choices=[c.key for c in CONTENDERS],
        help="HTTP: only these contenders (repeatable); ours is always included",
    )
    for name, default, what in (
        ("workers", http.workers, "HTTP: workers per contender"),
        ("connections", http.connections, "HTTP: per run, on every endpoint but /api/upstream"),
        ("upstream-connections", http.upstream_connections, "HTTP: per run on /api/upstream"),
        ("seconds", http.seconds, "HTTP: per round"),
        ("upstream-seconds", http.upstream_seconds, "HTTP: per round on /api/upstream"),
        ("warmup-seconds", http.warmup_seconds, "HTTP: per contender and endpoint"),
        ("rounds", http.rounds, "HTTP: interleaved rounds"),
        ("startup-rounds", http.startup_rounds, "HTTP: start-ups timed per contender"),
        ("mixed-seconds", http.mixed_seconds, "HTTP: per mixed-load round"),
        ("mixed-rounds", http.mixed_rounds, "HTTP: 0 skips the mixed load"),
        ("overload-seconds", http.overload_seconds, "HTTP: the overload phase; 0 skips it"),
        ("sockets", sockets.sockets, "WebSockets: held open per contender"),
        ("broadcast-sockets", sockets.broadcast_sockets, "WebSockets: members of the group"),
        ("broadcasts", sockets.rounds, "WebSockets: per contender and channel layer"),
        ("hostile-seconds", attacks.seconds, "hostile clients: each attack's duration"),
    ):
        found.add_argument(
            f"--{name}", type=type(default), default=None, help=f"{what} ({default})"
        )
    return found


def options(args: argparse.Namespace) -> tuple[HttpOptions, WebSocketOptions, HostileOptions]:
    given = {k: v for k, v in vars(args).items() if v is not None}
    if args.quick:
        given = {**QUICK, **given}

    def pick(**names: str) -> dict[str, object]:
        return {field: given[arg] for field, arg in names.items() if arg in given}

    http = HttpOptions(
        **pick(
            workers="workers",
            connections="connections",
            upstream_connections="upstream_connections",
            seconds="seconds",
            upstream_seconds="upstream_seconds",
            warmup_seconds="warmup_seconds",
            rounds="rounds",
            startup_rounds="startup_rounds",
            mixed_seconds="mixed_seconds",
            mixed_rounds="mixed_rounds",
            overload_seconds="overload_seconds",
        ),
        only=tuple(dict.fromkeys(["ours", *args.only])) if args.only else (),
    )
    sockets = WebSocketOptions(
        **pick(sockets="sockets", broadcast_sockets="broadcast_sockets", rounds="broadcasts")
    )
    attacks = HostileOptions(**pick(seconds="hostile_seconds"))
    return http, sockets, attacks


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the ExitStacks that stop everything


# Set explicitly: a shell starts background jobs with SIGINT ignored, and Python
# would keep that, so Ctrl+C or `kill -INT` could not stop the benchmark cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    output = args.output
    if output is None:
        output = Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else render.DOCS
    if args.report:
        try:
            found = results.read(args.report)
        except results.UnreadableResults as error:
            say(f"bench: cannot render {error}")
            return 2
        _publish(found, output, chart=not args.no_chart)
        return 0
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _interrupt)
    measured, status = _measure(args.phase or PHASES, *options(args))
    if measured == Results():
        return status
    path = output / RESULTS
    kept = [phase for phase in PHASES if getattr(measured, phase) is None]
    if path.exists() and kept:
        try:
            measured = measured.merged_over(results.read(path))
            say(f"Kept from {path}: {', '.join(kept)} (not run this time).")
        except results.UnreadableResults as error:
            say(f"Nothing kept from the results already there: {error}")
    results.write(measured, path)
    _publish(measured, output, chart=not args.no_chart)
    return status


def _measure(
    phases: list[str] | tuple[str, ...],
    http: HttpOptions,
    sockets: WebSocketOptions,
    attacks: HostileOptions,
) -> tuple[Results, int]:
    """Each phase asked for, in order, until one fails: what they measured, and the
    exit status."""
    found = Results()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    server_cpus, load_cpus = plan_cpus()
    # The WebSocket and hostile phases' servers touch no database.
    common = environment(f"sqlite:///{logs}/unused.sqlite3", 1, "")
    runs = {
        "http": lambda: Session(http, logs).run(),
        "websockets": lambda: websockets.run(sockets, common, logs, server_cpus, load_cpus),
        "hostile": lambda: hostile.run(attacks, common, logs, server_cpus, load_cpus),
    }
    for phase in PHASES:
        if phase not in phases:
            continue
        try:
            found = dataclasses.replace(found, **{phase: runs[phase]()})
        except KeyboardInterrupt:
            shutil.rmtree(logs, ignore_errors=True)
            say("Interrupted; every process the benchmark started has been stopped.")
            return found, 130
        except Exception as error:
            say(f"bench ({phase}) failed: {error}\n(server logs kept in {logs})")
            return found, 1
    replaced = render.Figures(found.http).replaced_workers() if found.http else []
    if replaced:
        say(
            f"Worker pids seen beyond {http.workers} per server ({', '.join(replaced)}): "
            f"a worker was replaced or a child appeared; server logs kept in {logs}"
        )
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return found, 0


def _publish(found: Results, output: Path, *, chart: bool) -> None:
    for path in render.publish(found, output, with_chart=chart):
        print(f"Wrote {path}.")
    if found.http:
        print(render.console_summary(found))


if __name__ == "__main__":
    sys.exit(main())
