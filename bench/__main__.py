"""``python -m bench``: run the benchmark, write docs/benchmarks.md and the chart.

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

from bench import report
from bench.contenders import CONTENDERS
from bench.session import Options, Session, say

DOCS = Path(__file__).resolve().parent.parent / "docs"


def parse_args(argv: list[str] | None) -> tuple[Options, Path, bool]:
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
    return options, args.output, args.analysis_only


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the ExitStack that stops everything


# Set explicitly: a shell starts background jobs with SIGINT ignored, and Python
# would keep that, so Ctrl+C or `kill -INT` could not stop the benchmark cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    options, output, analysis_only = parse_args(argv)
    if analysis_only:
        print(f"Wrote {report.refresh_analysis(output)} (analysis only; figures unchanged).")
        return 0
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _interrupt)
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
