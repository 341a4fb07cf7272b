"""The WebSocket phase of ``make bench``: many open sockets on one worker, what each
costs in memory, and how long a broadcast takes to reach them all; ours against
Daphne (Channels' own server) and stock Uvicorn serving the same consumers.

Every contender serves the example's consumers (example/consumers.py) with the
same settings: ours through ``config.asgi`` (the runtime's layers), the peers
through Channels' documented ``asgi.py`` (``bench/channels_asgi.py``). One worker
each, pinned to the server core; the client (the ``websockets`` library's asyncio
client, in this process) and Redis run on the other.

For each contender, each measurement on a freshly started server (memory rarely
goes back to the system, so a second measurement on the same process would reuse
what the first freed):

1. **Memory per socket**: open and close a few sockets (lazy imports, first
   allocations), read the worker's RSS, open ``sockets`` on /ws/echo/, one echo
   each, read it again: the difference over the sockets. Twice: with the client
   offering permessage-deflate, as browsers do (a server that accepts it keeps a
   compressor per socket), and without.
2. **A broadcast's fan-out**: ``broadcast_sockets`` on /ws/broadcast/ (no compression, so all
   do the same work), one of them sends a message to the group, and the time until
   the last one has received it; ``rounds`` times, through the in-memory channel
   layer and through Redis (channels-redis). The server's CPU time per broadcast is
   measured too: the wall time includes this one client reading every copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import machine, processes
from bench.contenders import BIN
from harness.processes import free_port

CHANNELS_APP = "bench.channels_asgi:application"
ORIGIN = "http://127.0.0.1"  # an allowed host: the origin check passes everywhere
READY_PATH = "/api/hello"
OPEN_BATCH = 32  # handshakes in flight at once: within every contender's listen backlog
WARM_UP_SOCKETS = 50


@dataclass(frozen=True)
class Options:
    sockets: int = 2000  # held open on one worker, for its memory
    broadcast_sockets: int = 1000  # members of the group a broadcast goes to
    rounds: int = 20  # broadcasts per contender and layer


@dataclass(frozen=True)
class SocketContender:
    key: str
    label: str
    argv: Callable[[int], list[str]]  # port -> command line
    note: str


def _ours(port: int) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "-c",
        "python:django_k8s_runtime.gunicorn",
        "config.asgi:application",
    ]


def _daphne(port: int) -> list[str]:
    # -v 0: no access log, as every contender here.
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", CHANNELS_APP]


def _uvicorn(port: int) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        CHANNELS_APP,
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio"),
        *("--lifespan", "off", "--no-access-log"),
    ]


CONTENDERS = (
    SocketContender(
        "ours",
        "ours: Gunicorn + django-k8s-runtime",
        _ours,
        "`config.asgi:application` (`get_asgi_application(websocket=...)`), one worker; "
        "Uvicorn's websockets-sansio protocol as the runtime fits it, behind the runtime's "
        "observer, guard and Channels' origin check",
    ),
    SocketContender(
        "daphne",
        "Daphne (Channels' own server)",
        _daphne,
        "`daphne bench.channels_asgi:application`: Twisted and Autobahn; Channels' "
        "documented `ProtocolTypeRouter`",
    ),
    SocketContender(
        "uvicorn",
        "Uvicorn standalone",
        _uvicorn,
        "`uvicorn bench.channels_asgi:application --ws websockets-sansio`, uvloop + "
        "httptools; the same Channels application as Daphne",
    ),
)


@dataclass
class Memory:
    sockets: int
    open_seconds: float
    baseline_kib: int
    loaded_kib: int

    @property
    def per_socket_kib(self) -> float:
        return (self.loaded_kib - self.baseline_kib) / self.sockets

    @property
    def handshakes_per_second(self) -> float:
        return self.sockets / self.open_seconds


@dataclass
class FanOut:
    sockets: int
    seconds: list[float]  # per broadcast: the send until the last copy arrived
    server_cpu_seconds: float  # per broadcast

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def worst_ms(self) -> float:
        return max(self.seconds) * 1000


@dataclass
class Results:
    options: Options
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    memory: dict[tuple[str, bool], Memory] = field(default_factory=dict)  # (key, deflate)
    fan_out: dict[tuple[str, str], FanOut] = field(default_factory=dict)  # (key, layer)
    elapsed_seconds: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load at start and end


def say(message: str) -> None:
    print(message, flush=True)


def run(
    options: Options,
    environ: dict[str, str],
    logs: Path,
    server_cpus: set[int] | None,
    load_cpus: set[int] | None,
) -> Results:
    """The whole phase; ``environ`` is the common environment of the HTTP phases."""
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    results = Results(options)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    environ = {
        **environ,
        "HEALTH_CHECKS": "",  # no database needed here
        "WEBSOCKET_MAX_CONNECTIONS": str(max(options.sockets, options.broadcast_sockets) * 2),
        "WEBSOCKET_MAX_MESSAGE_SIZE": "1048576",
    }
    with _redis(load_cpus) as redis_url:
        for deflate in (True, False):
            offered = "offered" if deflate else "off"
            say(f"WebSockets: memory of {options.sockets} sockets, deflate {offered}")
            for contender in CONTENDERS:
                with _serving(contender, environ, logs, server_cpus) as (process, port):
                    memory = asyncio.run(_memory(process, port, options.sockets, deflate))
                results.memory[(contender.key, deflate)] = memory
                say(
                    f"  {contender.key:<8} {memory.per_socket_kib:6.1f} KiB/socket, "
                    f"{memory.handshakes_per_second:6.0f} handshakes/s"
                )
        for layer, layer_url in (("in-memory", ""), ("redis", redis_url)):
            say(f"WebSockets: a broadcast to {options.broadcast_sockets} sockets, {layer} layer")
            layered = {**environ, "CHANNEL_LAYER_URL": layer_url}
            for contender in CONTENDERS:
                with _serving(contender, layered, logs, server_cpus) as (process, port):
                    fan_out = asyncio.run(_fan_out(process, port, options))
                results.fan_out[(contender.key, layer)] = fan_out
                say(
                    f"  {contender.key:<8} median {fan_out.median_ms:7.1f} ms, worst "
                    f"{fan_out.worst_ms:7.1f} ms, server CPU "
                    f"{fan_out.server_cpu_seconds * 1000:6.1f} ms per broadcast"
                )
    results.elapsed_seconds = time.monotonic() - began
    results.load_average = (load_before, os.getloadavg()[0])
    return results


# Servers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _serving(
    contender: SocketContender, environ: dict[str, str], logs: Path, cpus: set[int] | None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    environ = {**environ, "GUNICORN_PORT": str(port), "GUNICORN_WORKERS": "1"}
    log = logs / f"websockets-{contender.key}.log"
    process = processes.start(contender.argv(port), environ, log, cpus)
    try:
        try:
            processes.wait_ready(process, port, READY_PATH, time.monotonic())
        except RuntimeError as error:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{contender.key} did not start: {error}\n{tail}") from None
        yield process, port
    finally:
        processes.stop(process)


@contextlib.contextmanager
def _redis(cpus: set[int] | None) -> Iterator[str]:
    """A Redis of the phase's own, on a free port, keeping nothing on disk."""
    import redis

    port = free_port()
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    nothing_on_disk = ["--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()]
    process = subprocess.Popen(
        [*pin, "redis-server", "--port", str(port), "--bind", "127.0.0.1", *nothing_on_disk],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(redis.Redis(port=port)):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _worker_rss_kib(server_pid: int) -> int:
    return sum((processes.memory_kib(pid) or (0, 0))[0] for pid in processes.workers(server_pid))


# The client ---------------------------------------------------------------------------


async def _open(port: int, path: str, count: int, *, deflate: bool) -> list:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}{path}"
    options = {
        "origin": ORIGIN,
        "proxy": None,
        "open_timeout": 60,
        "ping_interval": None,  # the client sends no pings of its own
        "compression": "deflate" if deflate else None,
    }
    opened: list = []
    for start in range(0, count, OPEN_BATCH):
        batch = min(OPEN_BATCH, count - start)
        opened += await asyncio.gather(*(connect(url, **options) for _ in range(batch)))
    return opened


async def _close(sockets: list) -> None:
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def _memory(process: subprocess.Popen[bytes], port: int, count: int, deflate: bool) -> Memory:
    warm = await _open(port, "/ws/echo/", WARM_UP_SOCKETS, deflate=deflate)
    await asyncio.gather(*(_echo(s) for s in warm))
    await _close(warm)
    await asyncio.sleep(1)
    baseline = _worker_rss_kib(process.pid)
    started = time.monotonic()
    sockets = await _open(port, "/ws/echo/", count, deflate=deflate)
    open_seconds = time.monotonic() - started
    await asyncio.gather(*(_echo(s) for s in sockets))
    await asyncio.sleep(1)
    loaded = _worker_rss_kib(process.pid)
    await _close(sockets)
    return Memory(count, open_seconds, baseline, loaded)


async def _echo(socket) -> None:
    await socket.send("hello")
    await socket.recv()


async def _fan_out(process: subprocess.Popen[bytes], port: int, options: Options) -> FanOut:
    sockets = await _open(port, "/ws/broadcast/", options.broadcast_sockets, deflate=False)
    await asyncio.sleep(1)  # every consumer has joined the group
    seconds = []
    cpu_before = processes.cpu_seconds(process.pid)
    for number in range(options.rounds):
        message = f"broadcast {number}"
        started = time.perf_counter()
        await sockets[0].send(message)
        arrived = await asyncio.gather(*(_receive(s, message) for s in sockets))
        seconds.append(max(arrived) - started)
        await asyncio.sleep(0.2)
    cpu = (processes.cpu_seconds(process.pid) - cpu_before) / options.rounds
    await _close(sockets)
    return FanOut(options.broadcast_sockets, seconds, cpu)


async def _receive(socket, message: str) -> float:
    while (await asyncio.wait_for(socket.recv(), 30)) != message:
        pass
    return time.perf_counter()


# The report ---------------------------------------------------------------------------


def report(results: Results) -> str:
    options = results.options
    labels = {c.key: c.label for c in CONTENDERS}
    lines = [
        "# WebSocket benchmarks",
        "",
        f"Run {results.started:%Y-%m-%d %H:%M} UTC by `make bench` (its WebSocket phase, "
        f"`python -m bench --websockets-only` alone), {results.elapsed_seconds:.0f} s: "
        f"{options.sockets} sockets held on one worker; {options.rounds} broadcasts to "
        f"{options.broadcast_sockets} sockets per contender and channel layer. The method "
        "is in `bench/websockets.py`; the machine and versions are at the end. The "
        f"machine's 1-minute load average was {results.load_average[0]:.1f} at the start "
        f"and {results.load_average[1]:.1f} at the end (2 would be both cores busy).",
        "",
        "| Contender | What it serves |",
        "|---|---|",
        *(f"| {c.label} | {c.note} |" for c in CONTENDERS),
        "",
        f"## {options.sockets} open sockets on one worker",
        "",
        "The worker's RSS grown by the open sockets (each has exchanged one message), "
        "over the sockets; and how fast they were opened, "
        f"{OPEN_BATCH} handshakes in flight at a time (this one client, on one core, "
        "bounds that rate as much as the server does).",
        "",
        "| Contender | KiB per socket, deflate offered (browsers) | KiB per socket, no "
        "compression | Worker RSS with the sockets open (deflate) | Handshakes/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for contender in CONTENDERS:
        deflate = results.memory[(contender.key, True)]
        plain = results.memory[(contender.key, False)]
        lines.append(
            f"| {labels[contender.key]} | {deflate.per_socket_kib:.1f} | "
            f"{plain.per_socket_kib:.1f} | {deflate.loaded_kib / 1024:.0f} MiB | "
            f"{plain.handshakes_per_second:,.0f} |"
        )
    lines += [
        "",
        f"## A broadcast's fan-out to {options.broadcast_sockets} sockets",
        "",
        "One socket sends to the group (example/consumers.py, `BroadcastConsumer`); the "
        "time until the last of the sockets has the copy, and the server's CPU time per "
        "broadcast. The wall time includes this benchmark's one client reading every copy.",
        "",
        "| Contender | Layer | Median | Worst | Server CPU per broadcast |",
        "|---|---|---:|---:|---:|",
    ]
    for layer in ("in-memory", "redis"):
        for contender in CONTENDERS:
            fan_out = results.fan_out[(contender.key, layer)]
            lines.append(
                f"| {labels[contender.key]} | {layer} | {fan_out.median_ms:,.1f} ms | "
                f"{fan_out.worst_ms:,.1f} ms | {fan_out.server_cpu_seconds * 1000:,.1f} ms |"
            )
    lines += [
        "",
        "## Reading the figures",
        "",
        "- **Memory** is mostly the protocol library's per-socket state and the consumer; "
        "permessage-deflate, which browsers offer and Uvicorn accepts by default "
        "(Autobahn, under Daphne, does not), keeps a compressor and a decompressor per "
        "socket: about twice the memory. Ours adds the runtime's layers (the observer "
        "and the guard) to each socket.",
        "- **A broadcast's time is Channels' more than the server's.** A consumer hands "
        "every message to a thread to close stale database connections "
        "(`aclose_old_connections`) before handling it, in every server; the in-memory "
        "layer scans every channel and group on each receive "
        "(`InMemoryChannelLayer._clean_expired`), so its cost grows with the square of "
        "the members; channels-redis fetches a worker's messages from Redis one round "
        "trip at a time. A py-spy profile of ours and of Uvicorn (1000 members, Redis, "
        "2026-11-30) put the thread hop at a third of the server's CPU in both, and the "
        "runtime's own code in 1.5% of the samples of ours. Runs of the same contender "
        "differ by 10-20%.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine.describe().items()),
        f"| Source | {machine.source_revision()} |",
        *(
            f"| `{package}` | {_version(package)} |"
            for package in ("uvicorn", "websockets", "channels", "channels-redis", "daphne")
        ),
    ]
    return "\n".join(lines) + "\n"


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def write(results: Results, directory: Path) -> Path:
    path = directory / "benchmarks-websockets.md"
    path.write_text(report(results))
    return path
