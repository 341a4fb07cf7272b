"""``python -m bench``: run the benchmark, write docs/benchmarks.md and the chart, then
its WebSocket phase (bench/websockets.py), docs/benchmarks-websockets.md.

Ctrl+C or SIGTERM stops it cleanly: every server, wrk, the upstream stand-in and
PostgreSQL it started are stopped on the way out (``Session.run`` holds them in
one ExitStack).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench import report, websockets
from bench.contenders import CONTENDERS
from bench.session import Options, Session, environment, plan_cpus, say

DOCS = Path(__file__).resolve().parent.parent / "docs"


def parse_args(argv: list[str] | None) -> tuple[Options, websockets.Options, Path, str]:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--connections",
        type=int,
        default=defaults.connections,
        help="per run, on every endpoint but /api/upstream",
    )
    parser.add_argument(
        "--upstream-connections",
        type=int,
        default=defaults.upstream_connections,
        help="per run on /api/upstream",
    )
    parser.add_argument("--seconds", type=int, default=defaults.seconds, help="per round")
    parser.add_argument(
        "--upstream-seconds",
        type=int,
        default=defaults.upstream_seconds,
        help="per round on /api/upstream",
    )
    parser.add_argument("--warmup-seconds", type=int, default=defaults.warmup_seconds)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--startup-rounds", type=int, default=defaults.startup_rounds)
    parser.add_argument(
        "--mixed-seconds", type=int, default=defaults.mixed_seconds, help="per mixed-load round"
    )
    parser.add_argument(
        "--mixed-rounds", type=int, default=defaults.mixed_rounds, help="0 skips the mixed load"
    )
    parser.add_argument(
        "--overload-seconds",
        type=int,
        default=defaults.overload_seconds,
        help="of the overload phase (ours and gthread); 0 skips it",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[c.key for c in CONTENDERS],
        help="run only these contenders (repeatable); ours is always included",
    )
    parser.add_argument("--output", type=Path, default=DOCS, help="where the report goes")
    parser.add_argument(
        "--analysis-only",
        action="store_true",
        help="measure nothing: copy bench/analysis.md into the report already in --output",
    )
    socket_defaults = websockets.Options()
    parser.add_argument(
        "--websockets-only",
        action="store_true",
        help="run only the WebSocket phase (docs/benchmarks-websockets.md)",
    )
    parser.add_argument("--no-websockets", action="store_true", help="skip the WebSocket phase")
    parser.add_argument(
        "--sockets",
        type=int,
        default=socket_defaults.sockets,
        help="open sockets per contender in the WebSocket phase",
    )
    parser.add_argument(
        "--broadcast-sockets",
        type=int,
        default=socket_defaults.broadcast_sockets,
        help="members of the group each broadcast goes to, in the WebSocket phase",
    )
    parser.add_argument(
        "--broadcasts",
        type=int,
        default=socket_defaults.rounds,
        help="broadcasts per contender and channel layer in the WebSocket phase",
    )
    args = parser.parse_args(argv)
    only = tuple(dict.fromkeys(["ours", *args.only])) if args.only else ()
    options = Options(
        workers=args.workers,
        connections=args.connections,
        upstream_connections=args.upstream_connections,
        seconds=args.seconds,
        upstream_seconds=args.upstream_seconds,
        warmup_seconds=args.warmup_seconds,
        rounds=args.rounds,
        startup_rounds=args.startup_rounds,
        mixed_seconds=args.mixed_seconds,
        mixed_rounds=args.mixed_rounds,
        overload_seconds=args.overload_seconds,
        only=only,
    )
    phases = "analysis" if args.analysis_only else "all"
    if args.websockets_only:
        phases = "websockets"
    elif args.no_websockets and phases == "all":
        phases = "http"
    socket_options = websockets.Options(
        sockets=args.sockets, broadcast_sockets=args.broadcast_sockets, rounds=args.broadcasts
    )
    return options, socket_options, args.output, phases


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the ExitStack that stops everything


# Set explicitly: a shell starts background jobs with SIGINT ignored, and Python
# would keep that, so Ctrl+C or `kill -INT` could not stop the benchmark cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    options, socket_options, output, phases = parse_args(argv)
    if phases == "analysis":
        print(f"Wrote {report.refresh_analysis(output)} (analysis only; figures unchanged).")
        return 0
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _interrupt)
    status = 0
    if phases in ("all", "http"):
        status = _http(options, output)
    if status == 0 and phases in ("all", "websockets"):
        status = _websockets(socket_options, output)
    return status


def _websockets(options: websockets.Options, output: Path) -> int:
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    server_cpus, load_cpus = plan_cpus()
    database = f"sqlite:///{logs}/unused.sqlite3"  # the consumers touch no database
    try:
        results = websockets.run(
            options, environment(database, 1, ""), logs, server_cpus, load_cpus
        )
    except KeyboardInterrupt:
        shutil.rmtree(logs, ignore_errors=True)
        say("Interrupted; every process the benchmark started has been stopped.")
        return 130
    except Exception as error:
        say(f"bench (WebSockets) failed: {error}\n(server logs kept in {logs})")
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    print(f"Wrote {websockets.write(results, output)}.")
    return 0


def _http(options: Options, output: Path) -> int:
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    try:
        measurements = Session(options, logs).run()
    except KeyboardInterrupt:
        shutil.rmtree(logs, ignore_errors=True)
        say("Interrupted; every process the benchmark started has been stopped.")
        return 130
    except Exception as error:
        say(f"bench failed: {error}\n(server logs kept in {logs})")
        return 1
    replaced = report.replaced_workers(measurements)
    if replaced:
        say(
            f"Worker pids seen beyond {options.workers} per server ({', '.join(replaced)}): "
            f"a worker was replaced or a child appeared; server logs kept in {logs}"
        )
    else:
        shutil.rmtree(logs, ignore_errors=True)
    written = report.write(measurements, output)
    print(report.console_summary(measurements))
    print(f"Wrote {written} and its chart.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
