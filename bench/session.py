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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import database, overload, processes, upstream
from bench.contenders import (
    CONTENDERS,
    FREE_PORT,
    MIXED_LOAD,
    SCRATCH_DIR,
    UPSTREAM,
    Contender,
)
from harness import wrk
from harness.processes import free_port, inherited_environment

# wrk gives up on a request after this long and counts a timeout error.
WRK_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Options:
    workers: int = 1
    connections: int = 32
    upstream_connections: int = 256  # on /api/upstream, where waiting is the work
    seconds: int = 2
    # On /api/upstream a slow contender's 256 requests in flight can take seconds
    # each (a convoy on one core); wrk counts only requests completed within the
    # run, so a 2 s run could count none of them. Longer runs measure them.
    upstream_seconds: int = 8
    warmup_seconds: int = 1
    rounds: int = 4
    startup_rounds: int = 3
    mixed_seconds: int = 6
    mixed_rounds: int = 2
    overload_seconds: int = overload.SECONDS  # 0 skips the overload phase
    pause_seconds: float = 0.3
    only: tuple[str, ...] = ()  # contender keys; empty means all

    def connections_for(self, path: str) -> int:
        return self.upstream_connections if path == UPSTREAM else self.connections

    def seconds_for(self, path: str) -> int:
        return self.upstream_seconds if path == UPSTREAM else self.seconds


@dataclass
class Measurements:
    options: Options
    contenders: tuple[Contender, ...]
    server_cpus: set[int] | None
    load_cpus: set[int] | None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    postgres_version: str = ""
    ready_seconds: dict[str, list[float]] = field(default_factory=dict)
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)
    warmups: dict[tuple[str, str], wrk.Result] = field(default_factory=dict)
    mixed: dict[tuple[str, str], list[wrk.Result]] = field(default_factory=dict)
    mixed_warmups: dict[tuple[str, str], wrk.Result] = field(default_factory=dict)
    mixed_others_shares: list[float] = field(default_factory=list)
    upstream_url: str = ""
    # Peaks over the warm-up and rounds of every endpoint but /api/upstream: the
    # load the figures before /api/upstream existed were measured under.
    memory_before_upstream: dict[str, processes.MemoryPeaks] = field(default_factory=dict)
    memory: dict[str, processes.MemoryPeaks] = field(default_factory=dict)
    overload: dict[str, overload.Overload] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load at start and end

    def median_ready(self, key: str) -> float:
        return statistics.median(self.ready_seconds[key])


@dataclass(frozen=True)
class Run:
    """One wrk run against one contender, with what the server's core did meanwhile."""

    wrk: wrk.Result
    server_cpu_seconds: float  # the server's own CPU time during the run
    others_share: float | None  # share of the server's core used by other processes

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_seconds / self.wrk.requests * 1e6 if self.wrk.requests else 0.0


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
        return server_cpu, min(1.0, max(0.0, (core_busy - server_cpu) / seconds))


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
    def __init__(self, options: Options, logs: Path) -> None:
        self.options = options
        self.logs = logs
        contenders = tuple(c for c in CONTENDERS if not options.only or c.key in options.only)
        server_cpus, load_cpus = plan_cpus()
        self.measurements = Measurements(options, contenders, server_cpus, load_cpus)
        self.environ: dict[str, str] = {}
        self.scratch = ""  # a tmpfs directory for contenders that need one

    @property
    def contenders(self) -> tuple[Contender, ...]:
        return self.measurements.contenders

    def run(self) -> Measurements:
        began = time.monotonic()
        load_before = os.getloadavg()[0]
        if self.measurements.load_cpus:
            os.sched_setaffinity(0, self.measurements.load_cpus)  # PostgreSQL and wrk inherit it
        with contextlib.ExitStack() as stack:
            tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None  # a tmpfs, as in a pod
            self.scratch = tempfile.mkdtemp(prefix="bench-", dir=tmpfs)
            stack.callback(shutil.rmtree, self.scratch, ignore_errors=True)
            say("Starting PostgreSQL, migrating, seeding example items…")
            cluster = database.start_cluster()
            stack.callback(cluster.remove)
            self.measurements.postgres_version = database.server_version(cluster)
            say("Starting the upstream stand-in (uvicorn example.upstream:app)…")
            upstream_url = stack.enter_context(
                upstream.serving(self.logs / "upstream.log", self.measurements.load_cpus)
            )
            self.measurements.upstream_url = upstream_url
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
                self.measurements.memory_before_upstream = sampler.snapshot()
                self._warm_up(servers, last)
                self._rounds(servers, last)
                self._mixed(servers)
            self.measurements.memory = sampler.peaks
            self._overload()
        self.measurements.elapsed_seconds = time.monotonic() - began
        self.measurements.load_average = (load_before, os.getloadavg()[0])
        return self.measurements

    # Phases ------------------------------------------------------------------

    def _time_startups(self) -> None:
        for round_number in range(1, self.options.startup_rounds + 1):
            say(f"Start-up round {round_number}/{self.options.startup_rounds}")
            for contender in self.contenders:
                with self._serving(contender) as served:
                    seconds = served.ready_seconds
                    self.measurements.ready_seconds.setdefault(contender.key, []).append(seconds)
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
            run = self._drive(servers[contender.key], path, self.options.warmup_seconds)
            self.measurements.warmups[(contender.key, path)] = run.wrk

    def _rounds(self, servers: dict[str, Served], paths: list[str]) -> None:
        if not paths:
            return
        for round_number in range(1, self.options.rounds + 1):
            say(f"Round {round_number}/{self.options.rounds} ({', '.join(paths)})")
            for contender, path in self._pairs(paths):
                run = self._drive(servers[contender.key], path, self.options.seconds_for(path))
                self.measurements.runs.setdefault((contender.key, path), []).append(run)
                result = run.wrk
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
            for path, result in found.items():
                self.measurements.mixed_warmups[(contender.key, path)] = result
        for round_number in range(1, self.options.mixed_rounds + 1):
            say(f"Mixed-load round {round_number}/{self.options.mixed_rounds}")
            for contender in mixed:
                found, others = self._drive_mixed(
                    servers[contender.key], contender, self.options.mixed_seconds
                )
                if others is not None:
                    self.measurements.mixed_others_shares.append(others)
                parts = []
                for path, result in found.items():
                    self.measurements.mixed.setdefault((contender.key, path), []).append(result)
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
            self.measurements.overload[contender.key] = result
            p99 = result.p99_admitted_ms()
            refusal = result.refusal_median_ms()
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

    def _drive(self, served: Served, path: str, seconds: int) -> Run:
        watch = _CoreWatch(served.process.pid, self.measurements.server_cpus)
        result = wrk.run(
            f"http://127.0.0.1:{served.port}{path}",
            seconds=seconds,
            connections=self.options.connections_for(path),
            timeout=WRK_TIMEOUT_SECONDS,
        )
        server_cpu, others = watch.stop(result.seconds)
        self._settle(served)
        return Run(result, server_cpu, others)

    def _drive_mixed(
        self, served: Served, contender: Contender, seconds: int
    ) -> tuple[dict[str, wrk.Result], float | None]:
        """MIXED_LOAD on one server, one wrk per path, all at once: each wrk's
        result, and the share of the server's core other processes used meanwhile."""
        connections = dict(MIXED_LOAD)
        paths = contender.mixed_paths
        watch = _CoreWatch(served.process.pid, self.measurements.server_cpus)
        started = [
            wrk.start(
                f"http://127.0.0.1:{served.port}{path}",
                seconds=seconds,
                connections=connections[path],
                timeout=WRK_TIMEOUT_SECONDS,
            )
            for path in paths
        ]
        results = wrk.collect(started)
        _, others = watch.stop(max(result.seconds for result in results))
        self._settle(served)
        return dict(zip(paths, results, strict=True)), others

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
        placeholders = {FREE_PORT: lambda: str(free_port()), SCRATCH_DIR: lambda: self.scratch}
        extra = {
            name: placeholders[value]() if value in placeholders else value
            for name, value in contender.environ
        }
        started = time.monotonic()
        process = processes.start(
            contender.argv(port, self.options.workers),
            {**self.environ, **(environ or {}), "GUNICORN_PORT": str(port), **extra},
            log,
            self.measurements.server_cpus,
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
