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
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import machine, processes, results
from bench.contenders import BIN
from bench.results import FanOut, SocketMemory
from bench.results import WebSocketOptions as Options
from harness.processes import free_port

CHANNELS_APP = "bench.channels_asgi:application"
ORIGIN = "http://127.0.0.1"  # an allowed host: the origin check passes everywhere
READY_PATH = "/api/hello"
WARM_UP_SOCKETS = 50


@dataclass(frozen=True)
class SocketContender:
    key: str
    label: str
    argv: Callable[[int], list[str]]  # port -> command line
    note: str

    def recorded(self) -> results.Contender:
        return results.Contender(
            self.key, self.label, "ours" if self.key == "ours" else "peer", self.note
        )


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


def say(message: str) -> None:
    print(message, flush=True)


def run(
    options: Options,
    environ: dict[str, str],
    logs: Path,
    server_cpus: set[int] | None,
    load_cpus: set[int] | None,
) -> results.WebSocketResults:
    """The whole phase; ``environ`` is the common environment of the HTTP phases."""
    clock = machine.Clock()
    memories: list[SocketMemory] = []
    fan_outs: list[FanOut] = []
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
                    memory = asyncio.run(
                        _memory(contender.key, process, port, options, deflate=deflate)
                    )
                memories.append(memory)
                say(
                    f"  {contender.key:<8} {memory.per_socket_kib:6.1f} KiB/socket, "
                    f"{memory.handshakes_per_second:6.0f} handshakes/s"
                )
        for layer, layer_url in (("in-memory", ""), ("redis", redis_url)):
            say(f"WebSockets: a broadcast to {options.broadcast_sockets} sockets, {layer} layer")
            layered = {**environ, "CHANNEL_LAYER_URL": layer_url}
            for contender in CONTENDERS:
                with _serving(contender, layered, logs, server_cpus) as (process, port):
                    fan_out = asyncio.run(_fan_out(contender.key, layer, process, port, options))
                fan_outs.append(fan_out)
                say(
                    f"  {contender.key:<8} median {fan_out.median_ms:7.1f} ms, worst "
                    f"{fan_out.worst_ms:7.1f} ms, server CPU "
                    f"{fan_out.server_cpu_seconds * 1000:6.1f} ms per broadcast"
                )
        redis_version = _redis_version(redis_url)
    return results.WebSocketResults(
        run=clock.info({"Redis": redis_version}),
        options=options,
        contenders=tuple(c.recorded() for c in CONTENDERS),
        memory=memories,
        fan_out=fan_outs,
    )


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


def _redis_version(url: str) -> str:
    import redis

    return str(redis.Redis.from_url(url).info("server")["redis_version"])


def _answers(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _worker_rss_kib(server_pid: int) -> int:
    return sum((processes.memory_kib(pid) or (0, 0))[0] for pid in processes.workers(server_pid))


# The client ---------------------------------------------------------------------------


async def _open(port: int, path: str, count: int, batch: int, *, deflate: bool) -> list:
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
    for start in range(0, count, batch):
        at_once = min(batch, count - start)
        opened += await asyncio.gather(*(connect(url, **options) for _ in range(at_once)))
    return opened


async def _close(sockets: list) -> None:
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def _memory(
    key: str, process: subprocess.Popen[bytes], port: int, options: Options, *, deflate: bool
) -> SocketMemory:
    count, batch = options.sockets, options.open_batch
    warm = await _open(port, "/ws/echo/", WARM_UP_SOCKETS, batch, deflate=deflate)
    await asyncio.gather(*(_echo(s) for s in warm))
    await _close(warm)
    await asyncio.sleep(1)
    baseline = _worker_rss_kib(process.pid)
    started = time.monotonic()
    sockets = await _open(port, "/ws/echo/", count, batch, deflate=deflate)
    open_seconds = time.monotonic() - started
    await asyncio.gather(*(_echo(s) for s in sockets))
    await asyncio.sleep(1)
    loaded = _worker_rss_kib(process.pid)
    await _close(sockets)
    return SocketMemory(key, deflate, count, round(open_seconds, 3), baseline, loaded)


async def _echo(socket) -> None:
    await socket.send("hello")
    await socket.recv()


async def _fan_out(
    key: str, layer: str, process: subprocess.Popen[bytes], port: int, options: Options
) -> FanOut:
    count, batch = options.broadcast_sockets, options.open_batch
    sockets = await _open(port, "/ws/broadcast/", count, batch, deflate=False)
    await asyncio.sleep(1)  # every consumer has joined the group
    seconds = []
    cpu_before = processes.cpu_seconds(process.pid)
    for number in range(options.rounds):
        message = f"broadcast {number}"
        started = time.perf_counter()
        await sockets[0].send(message)
        arrived = await asyncio.gather(*(_receive(s, message) for s in sockets))
        seconds.append(round(max(arrived) - started, 5))
        await asyncio.sleep(0.2)
    cpu = (processes.cpu_seconds(process.pid) - cpu_before) / options.rounds
    await _close(sockets)
    return FanOut(key, layer, count, seconds, round(cpu, 4))


async def _receive(socket, message: str) -> float:
    while (await asyncio.wait_for(socket.recv(), 30)) != message:
        pass
    return time.perf_counter()
