"""One benchmark session: PostgreSQL, the upstream stand-in, start-up timing,
warm-up, interleaved rounds, then the mixed load.

The order of work is what makes the comparison fair:

1. **Start-up**: each contender is started alone, timed to its first 200 and
   stopped, several times, interleaved, so no start competes with another.
2. **Load**: all contenders then run at once (idle ones cost nothing), each is
   warmed up on every endpoint, and then every round drives every contender on
   every endpoint in turn (A B C … A B C …), so that drift over the minutes of
   the run hits them all alike. After each run the server is left to finish what
   it still had queued before the next run starts. ``/api/upstream`` (hundreds
   of connections, a thread each in ours) gets its warm-up and rounds after the
   other endpoints', so memory is known with and without it.
3. **Mixed load**: some contenders are then driven on several endpoints at once
   (``contenders.MIXED_LOAD``: slow synchronous views saturating the threads, an
   async view and the liveness probe), again in interleaved rounds.

Servers are pinned to one core and wrk, PostgreSQL, the upstream stand-in and
this process to the other, so none of them takes CPU from the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import database, machine, overload, processes, results, upstream
from bench.contenders import (
    CONTENDERS,
    ENDPOINT_NAMES,
    FREE_PORT,
    GTHREAD_THREADS,
    MIXED_LOAD,
    OTLP_SINK,
    SCRATCH_DIR,
    STOCK_LAYERS,
    UPSTREAM,
    UPSTREAM_DELAY_MS,
    Contender,
)
from bench.results import HttpOptions as Options
from bench.results import Load, Run
from harness import otlp, wrk
from harness.processes import free_port, inherited_environment


def connections_for(options: Options, path: str) -> int:
    return options.upstream_connections if path == UPSTREAM else options.connections


def seconds_for(options: Options, path: str) -> int:
    return options.upstream_seconds if path == UPSTREAM else options.seconds


def load(result: wrk.Result) -> Load:
    return Load(
        requests=result.requests,
        seconds=round(result.seconds, 6),
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        socket_errors=result.socket_errors,
        status_errors=result.status_errors,
        timeouts=result.timeouts,
    )


class _CoreWatch:
    """The server's CPU time, and the other processes' share of its core, from
    now until :meth:`stop`."""

    def __init__(self, pid: int, server_cpus: set[int] | None) -> None:
        self.pid = pid
        self.core = min(server_cpus) if server_cpus else None
        self.cpu_before = processes.cpu_seconds(pid)
        self.core_before = processes.core_busy_seconds(self.core) if self.core is not None else 0.0

    def stop(self, seconds: float) -> tuple[float, float | None]:
        """(the server's CPU seconds, the others' share of its core or None)."""
        server_cpu = processes.cpu_seconds(self.pid) - self.cpu_before
        if self.core is None or not seconds:
            return server_cpu, None
        core_busy = processes.core_busy_seconds(self.core) - self.core_before
        return server_cpu, round(min(1.0, max(0.0, (core_busy - server_cpu) / seconds)), 4)


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen[bytes]
    port: int
    ready_seconds: float


def plan_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load CPUs): the first allowed core for servers, the rest for load."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None  # nothing to separate; every process shares the one core
    return {allowed[0]}, set(allowed[1:])


def environment(database_url: str, workers: int, upstream_url: str) -> dict[str, str]:
    """What every contender gets: production settings, plain http on loopback."""
    return {
        **inherited_environment(),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_HTTPS": "false",  # no redirect to https on plain-http loopback
        "DATABASE_URL": database_url,
        "GUNICORN_HOST": "127.0.0.1",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_ACCESS_LOG": "false",  # access logs off for everyone (docs/benchmarks.md)
        "GUNICORN_SHUTDOWN_DELAY": "0",  # only makes stopping between phases quick
        "LOG_FORMAT": "json",
        "METRICS_PORT": "0",  # no metrics listener: no peer has one
        "EXAMPLE_UPSTREAM_URL": upstream_url,
    }


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Session:
    """The HTTP phase: run by :meth:`run`, which returns what it measured."""

    def __init__(self, options: Options, logs: Path) -> None:
        self.options = options
        self.logs = logs
        self.contenders = tuple(c for c in CONTENDERS if not options.only or c.key in options.only)
        self.server_cpus, self.load_cpus = plan_cpus()
        self.environ: dict[str, str] = {}
        self.scratch = ""  # a tmpfs directory for contenders that need one
        self.otlp_sink = ""  # the OTLP/HTTP endpoint traced contenders export to
        self.ready_seconds: dict[str, list[float]] = {}
        self.runs: list[Run] = []
        self.mixed: list[Run] = []
        self.mixed_others_shares: list[float] = []
        self.overload: dict[str, results.Overload] = {}

    def run(self) -> results.HttpResults:
        clock = machine.Clock()
        if self.load_cpus:
            os.sched_setaffinity(0, self.load_cpus)  # PostgreSQL and wrk inherit it
        with contextlib.ExitStack() as stack:
            tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None  # a tmpfs, as in a pod
            self.scratch = tempfile.mkdtemp(prefix="bench-", dir=tmpfs)
            stack.callback(shutil.rmtree, self.scratch, ignore_errors=True)
            self.otlp_sink = stack.enter_context(otlp.Receiver(decode=False)).endpoint
            say("Starting PostgreSQL, migrating, seeding example items…")
            cluster = database.start_cluster()
            stack.callback(cluster.remove)
            postgres = database.server_version(cluster)
            say("Starting the upstream stand-in (uvicorn example.upstream:app)…")
            upstream_url = stack.enter_context(
                upstream.serving(self.logs / "upstream.log", self.load_cpus)
            )
            self.environ = environment(cluster.url(), self.options.workers, upstream_url)
            database.prepare(self.environ)
            self._time_startups()
            servers = {c.key: stack.enter_context(self._serving(c)) for c in self.contenders}
            self._check_endpoints(servers)
            pids = {key: served.process.pid for key, served in servers.items()}
            paths = list(dict.fromkeys(path for c in self.contenders for path in c.endpoints))
            first, last = [p for p in paths if p != UPSTREAM], [p for p in paths if p == UPSTREAM]
            with processes.MemorySampler(pids) as sampler:
                self._warm_up(servers, first)
                self._rounds(servers, first)
                without_upstream = sampler.snapshot()
                self._warm_up(servers, last)
                self._rounds(servers, last)
                self._mixed(servers)
            self._overload()
        return results.HttpResults(
            run=clock.info({"PostgreSQL": postgres, "wrk": wrk.version()}),
            options=self.options,
            contenders=tuple(c.recorded() for c in self.contenders),
            endpoint_names=dict(ENDPOINT_NAMES),
            mixed_load=MIXED_LOAD,
            upstream_delay_ms=UPSTREAM_DELAY_MS,
            gthread_threads=GTHREAD_THREADS,
            stock_layers=STOCK_LAYERS,
            server_cpus=tuple(sorted(self.server_cpus or ())),
            load_cpus=tuple(sorted(self.load_cpus or ())),
            ready_seconds=self.ready_seconds,
            runs=self.runs,
            mixed=self.mixed,
            mixed_others_shares=self.mixed_others_shares,
            memory_without_upstream={k: v.recorded() for k, v in without_upstream.items()},
            memory={key: peaks.recorded() for key, peaks in sampler.peaks.items()},
            overload=self.overload,
        )

    # Phases ------------------------------------------------------------------

    def _time_startups(self) -> None:
        for round_number in range(1, self.options.startup_rounds + 1):
            say(f"Start-up round {round_number}/{self.options.startup_rounds}")
            for contender in self.contenders:
                with self._serving(contender) as served:
                    seconds = served.ready_seconds
                    self.ready_seconds.setdefault(contender.key, []).append(round(seconds, 4))
                    say(f"  {contender.key:<14} ready in {seconds:.2f}s")

    def _check_endpoints(self, servers: dict[str, Served]) -> None:
        """Every endpoint must answer 200 before it is measured: a redirect or an
        error page would otherwise be benchmarked as if it were the view."""
        for contender in self.contenders:
            port = servers[contender.key].port
            for path in dict.fromkeys((*contender.endpoints, *contender.mixed_paths)):
                status = processes.get_status(port, path)
                if status != 200:
                    raise RuntimeError(f"{contender.key}: GET {path} answered {status}, not 200")

    def _warm_up(self, servers: dict[str, Served], paths: list[str]) -> None:
        if not paths:
            return
        say(
            f"Warm-up: {self.options.warmup_seconds:g}s per contender and endpoint "
            f"({', '.join(paths)})"
        )
        for contender, path in self._pairs(paths):
            seconds = self.options.warmup_seconds
            self.runs.append(self._drive(servers[contender.key], contender, path, seconds, True))

    def _rounds(self, servers: dict[str, Served], paths: list[str]) -> None:
        if not paths:
            return
        for round_number in range(1, self.options.rounds + 1):
            say(f"Round {round_number}/{self.options.rounds} ({', '.join(paths)})")
            for contender, path in self._pairs(paths):
                seconds = seconds_for(self.options, path)
                run = self._drive(servers[contender.key], contender, path, seconds, False)
                self.runs.append(run)
                result = run.load
                errors = f", {result.errors} ERRORS" if result.errors else ""
                say(
                    f"  {contender.key:<14} {path:<14} {result.rps:>9,.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"{run.cpu_us_per_request:7.0f} µs CPU/req{errors}"
                )

    def _mixed(self, servers: dict[str, Served]) -> None:
        mixed = [c for c in self.contenders if c.mixed_paths]
        if not mixed or self.options.mixed_rounds < 1:
            return
        load = ", ".join(f"{connections} on {path}" for path, connections in MIXED_LOAD)
        say(f"Mixed load ({load}, at once): warm-up {self.options.warmup_seconds:g}s each")
        for contender in mixed:
            served = servers[contender.key]
            found, _ = self._drive_mixed(served, contender, self.options.warmup_seconds)
            self.mixed += [Run(contender.key, path, True, load) for path, load in found.items()]
        for round_number in range(1, self.options.mixed_rounds + 1):
            say(f"Mixed-load round {round_number}/{self.options.mixed_rounds}")
            for contender in mixed:
                found, others = self._drive_mixed(
                    servers[contender.key], contender, self.options.mixed_seconds
                )
                if others is not None:
                    self.mixed_others_shares.append(others)
                parts = []
                for path, result in found.items():
                    self.mixed.append(Run(contender.key, path, False, result))
                    errors = f", {result.errors} ERRORS" if result.errors else ""
                    parts.append(
                        f"{path} {result.rps:,.0f} req/s p99 {result.p99_ms:,.1f} ms{errors}"
                    )
                say(f"  {contender.key:<14} " + "; ".join(parts))

    def _overload(self) -> None:
        chosen = [c for c in self.contenders if c.key in overload.CONTENDERS]
        if self.options.overload_seconds < 1 or len(chosen) < 1:
            return
        say(
            f"Overload: {overload.MULTIPLE:g}× what {self.options.workers} worker(s) serve on "
            f"{overload.PATH}, offered at a fixed rate for {self.options.overload_seconds}s, "
            f"GUNICORN_TIMEOUT={overload.TIMEOUT_SECONDS}"
        )
        deadline = {"GUNICORN_TIMEOUT": str(overload.TIMEOUT_SECONDS)}
        for contender in chosen:
            with self._serving(contender, deadline) as served:
                result = overload.offer(
                    served.port, self.options.workers, self.options.overload_seconds
                )
            self.overload[contender.key] = result
            p99, refusal = result.p99_admitted_ms, result.refusal_median_ms
            say(
                f"  {contender.key:<14} goodput {result.goodput_rps:,.0f} req/s of "
                f"{result.offered_rps:,.0f} offered; admitted p99 "
                f"{'-' if p99 is None else f'{p99:,.0f} ms'}; refused {result.refused:,} "
                f"(median {'-' if refusal is None else f'{refusal:,.1f} ms'}); "
                f"late or failed {result.late_or_failed:,}"
            )

    # Helpers -----------------------------------------------------------------

    def _pairs(self, paths: list[str]) -> Iterator[tuple[Contender, str]]:
        """Endpoint by endpoint, every contender in turn: A B C … on each path."""
        for path in paths:
            for contender in self.contenders:
                if path in contender.endpoints:
                    yield contender, path

    def _drive(
        self, served: Served, contender: Contender, path: str, seconds: int, warmup: bool
    ) -> Run:
        watch = _CoreWatch(served.process.pid, self.server_cpus)
        result = wrk.run(
            f"http://127.0.0.1:{served.port}{path}",
            seconds=seconds,
            connections=connections_for(self.options, path),
            timeout=self.options.wrk_timeout_seconds,
        )
        server_cpu, others = watch.stop(result.seconds)
        self._settle(served)
        return Run(contender.key, path, warmup, load(result), round(server_cpu, 3), others)

    def _drive_mixed(
        self, served: Served, contender: Contender, seconds: int
    ) -> tuple[dict[str, Load], float | None]:
        """MIXED_LOAD on one server, one wrk per path, all at once: each wrk's
        result, and the share of the server's core other processes used meanwhile."""
        connections = dict(MIXED_LOAD)
        paths = contender.mixed_paths
        watch = _CoreWatch(served.process.pid, self.server_cpus)
        started = [
            wrk.start(
                f"http://127.0.0.1:{served.port}{path}",
                seconds=seconds,
                connections=connections[path],
                timeout=self.options.wrk_timeout_seconds,
            )
            for path in paths
        ]
        measured = wrk.collect(started)
        _, others = watch.stop(max(result.seconds for result in measured))
        self._settle(served)
        return {path: load(found) for path, found in zip(paths, measured, strict=True)}, others

    def _settle(self, served: Served) -> None:
        """Let the server finish what it still had queued when wrk stopped (a slow
        view's requests, say) before the next run, so that work does not land in
        another contender's run on the same core."""
        time.sleep(self.options.pause_seconds)
        processes.wait_idle(served.process.pid)

    @contextlib.contextmanager
    def _serving(
        self, contender: Contender, environ: dict[str, str] | None = None
    ) -> Iterator[Served]:
        """The contender running on a free port, ready; stopped on the way out.
        ``environ`` is laid over the common environment (one phase's settings)."""
        port = free_port()
        log = self.logs / f"{contender.key}.log"
        placeholders = {
            FREE_PORT: lambda: str(free_port()),
            SCRATCH_DIR: lambda: self.scratch,
            OTLP_SINK: lambda: self.otlp_sink,
        }
        extra = {
            name: placeholders[value]() if value in placeholders else value
            for name, value in contender.environ
        }
        started = time.monotonic()
        process = processes.start(
            contender.argv(port, self.options.workers),
            {**self.environ, **(environ or {}), "GUNICORN_PORT": str(port), **extra},
            log,
            self.server_cpus,
        )
        try:
            try:
                seconds = processes.wait_ready(process, port, contender.ready_path, started)
            except RuntimeError as error:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{contender.key} did not start: {error}\n{tail}") from None
            yield Served(process, port, seconds)
        finally:
            processes.stop(process)
