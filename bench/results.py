"""What a run measured, as it is written to JSON and read back: the reports are
rendered from this alone (``python -m bench --report FILE``), never from memory.

Every phase (HTTP, WebSockets, hostile clients) keeps its raw figures (each wrk
run, each broadcast, each attack), how it was run (its options, what each
contender serves) and where (``RunInfo``: the machine, every version, the commit).
A phase not run is ``None``. ``SCHEMA`` changes when a field does, and a file of
another schema is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1


class UnreadableResults(Exception):
    """The file is not results of this schema; the message says why, in one line."""


# Where and when ------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory_gib: float
    os: str
    kernel: str


@dataclass(frozen=True)
class RunInfo:
    started: str  # ISO 8601, UTC
    elapsed_seconds: float
    load_average: tuple[float, float]  # the 1-minute load at the start and at the end
    machine: Machine
    python: str
    packages: dict[str, str]  # distribution name -> version
    tools: dict[str, str]  # PostgreSQL, wrk, Redis: what the phase started
    source: str  # the commit measured


# The HTTP phase ------------------------------------------------------------------


@dataclass(frozen=True)
class HttpOptions:
    workers: int = 1
    connections: int = 32
    upstream_connections: int = 256  # on /api/upstream, where waiting is the work
    seconds: int = 2
    # On /api/upstream a slow contender's 256 requests in flight can take seconds
    # each; wrk counts only requests completed within the run, so a 2 s run could
    # count none of them. Longer runs measure them.
    upstream_seconds: int = 8
    warmup_seconds: int = 1
    rounds: int = 4
    startup_rounds: int = 3
    mixed_seconds: int = 6
    mixed_rounds: int = 2
    overload_seconds: int = 15  # 0 skips the overload phase
    pause_seconds: float = 0.3
    wrk_timeout_seconds: int = 5  # wrk gives up on a request after this long: a timeout error
    only: tuple[str, ...] = ()  # contender keys; empty means all


@dataclass(frozen=True)
class Contender:
    """A contender as the reports need it (bench/contenders.py has how it runs)."""

    key: str
    label: str
    role: str  # ours, peer, ceiling, variant
    note: str
    endpoints: tuple[str, ...] = ()
    mixed_paths: tuple[str, ...] = ()
    wsgi: bool = False


@dataclass(frozen=True)
class Load:
    """What wrk saw in one run."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write + timeout
    status_errors: int  # responses with a status of 400 or more
    timeouts: int  # of socket_errors: unanswered within wrk's timeout

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors


@dataclass(frozen=True)
class Run:
    """One wrk run of one contender on one path, and what the server's core did."""

    contender: str
    path: str
    warmup: bool
    load: Load
    server_cpu_seconds: float | None = None  # the server's own CPU time during the run
    others_share: float | None = None  # share of the server's core other processes used

    @property
    def cpu_us_per_request(self) -> float:
        if not self.server_cpu_seconds or not self.load.requests:
            return 0.0
        return self.server_cpu_seconds / self.load.requests * 1e6


@dataclass(frozen=True)
class MemoryPeak:
    worker_rss_kib: int
    worker_pss_kib: int
    total_pss_kib: int  # every process of the server, master included
    worker_pids: int  # distinct worker pids seen: more than the workers means one was replaced


@dataclass(frozen=True)
class Overload:
    """An open-loop overload of one contender: what came back, by outcome."""

    path: str
    offered_rps: float
    multiple: float  # offered ÷ what the workers' threads serve
    threads: int
    seconds: float
    timeout_seconds: float  # GUNICORN_TIMEOUT: a 200 later than this is late
    outcomes: dict[str, int]  # ok, late, refused, error, failed
    statuses: dict[str, int]  # status code or exception name -> count
    p99_admitted_ms: float | None
    refusal_median_ms: float | None

    @property
    def goodput_rps(self) -> float:
        return self.outcomes.get("ok", 0) / self.seconds

    @property
    def refused(self) -> int:
        return self.outcomes.get("refused", 0)

    @property
    def late_or_failed(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome not in ("ok", "refused"))


@dataclass(frozen=True)
class HttpResults:
    run: RunInfo
    options: HttpOptions
    contenders: tuple[Contender, ...]
    endpoint_names: dict[str, str]  # path -> what it is
    mixed_load: tuple[tuple[str, int], ...]  # (path, connections), all at once
    upstream_delay_ms: int
    gthread_threads: int
    stock_layers: str  # what the ASGI peers' Django handler is wrapped in
    server_cpus: tuple[int, ...]
    load_cpus: tuple[int, ...]
    ready_seconds: dict[str, list[float]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)  # warm-ups and rounds
    mixed: list[Run] = field(default_factory=list)
    mixed_others_shares: list[float] = field(default_factory=list)
    memory_without_upstream: dict[str, MemoryPeak] = field(default_factory=dict)
    memory: dict[str, MemoryPeak] = field(default_factory=dict)
    overload: dict[str, Overload] = field(default_factory=dict)


# The WebSocket phase -------------------------------------------------------------


@dataclass(frozen=True)
class WebSocketOptions:
    sockets: int = 2000  # held open on one worker, for its memory
    broadcast_sockets: int = 1000  # members of the group a broadcast goes to
    rounds: int = 20  # broadcasts per contender and layer
    open_batch: int = 32  # handshakes in flight at once


@dataclass(frozen=True)
class SocketMemory:
    contender: str
    deflate: bool  # the client offered permessage-deflate
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


@dataclass(frozen=True)
class FanOut:
    contender: str
    layer: str  # in-memory, redis
    sockets: int
    seconds: list[float]  # per broadcast: from the send until the last copy arrived
    server_cpu_seconds: float  # per broadcast

    @property
    def median_ms(self) -> float:
        ordered = sorted(self.seconds)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle] * 1000
        return (ordered[middle - 1] + ordered[middle]) / 2 * 1000

    @property
    def worst_ms(self) -> float:
        return max(self.seconds) * 1000


@dataclass(frozen=True)
class WebSocketResults:
    run: RunInfo
    options: WebSocketOptions
    contenders: tuple[Contender, ...]
    memory: list[SocketMemory] = field(default_factory=list)
    fan_out: list[FanOut] = field(default_factory=list)


# The hostile clients ---------------------------------------------------------------


@dataclass(frozen=True)
class HostileOptions:
    seconds: float = 5  # each attack's duration; the mix runs them all at once as long
    burst_sockets: int = 8  # compressed bursts: sockets, each sending ...
    burst_messages: int = 40  # ... this many messages of a mebibyte of zeros (1 KB on the wire)
    ping_clients: int = 2  # ping floods from clients that never read, each at most ...
    ping_mib: int = 64  # ... this many MiB of pings
    pipeline_clients: int = 4  # HTTP pipelining without reading, each at most ...
    pipeline_mib: int = 4  # ... this many MiB of requests
    slow_bodies: int = 1000  # POSTs whose 100-byte body comes a byte a second


@dataclass(frozen=True)
class Attack:
    """One attack (or the mix of them all) on a freshly started server."""

    contender: str
    attack: str  # bursts, pings, pipelining, slow-bodies, mix
    baseline_mib: float = 0.0  # the worker's RSS before (after a warm-up)
    peak_mib: float = 0.0  # its VmHWM, reset before the attack: the peak during it
    after_mib: float = 0.0  # its RSS once the attackers have gone
    sent_mib: float = 0.0  # what the attackers sent (the kernels' buffers hold some of it)
    others_ok: int = 0  # another client's GET /api/hello answered 200 within 2 s ...
    others_asked: int = 0  # ... of so many asked meanwhile
    others_slowest_ms: float | None = None  # its slowest answer (2 s if one never came)
    skipped: str = ""  # why the attack could not run against this server (no figures)
    note: str = ""  # which attacker could not run (or connect), and why

    @property
    def grown_mib(self) -> float:
        return self.peak_mib - self.baseline_mib


@dataclass(frozen=True)
class HostileResults:
    run: RunInfo
    options: HostileOptions
    contenders: tuple[Contender, ...]
    environment: dict[str, str]  # what ours ran with beyond the common environment
    attacks: list[Attack] = field(default_factory=list)


# The document ----------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    schema: int = SCHEMA
    http: HttpResults | None = None
    websockets: WebSocketResults | None = None
    hostile: HostileResults | None = None

    def merged_over(self, older: Results) -> Results:
        """These results, with the phases they lack taken from ``older``."""
        return Results(
            http=self.http or older.http,
            websockets=self.websockets or older.websockets,
            hostile=self.hostile or older.hostile,
        )


def dumps(results: Results) -> str:
    return json.dumps(dataclasses.asdict(results), indent=1, ensure_ascii=False) + "\n"


def write(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(results))


def read(path: Path) -> Results:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UnreadableResults(f"{path}: {error}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise UnreadableResults(f"{path}: schema {schema!r}, this bench reads schema {SCHEMA}")
    try:
        return _load(Results, data)
    except (TypeError, KeyError, ValueError) as error:
        raise UnreadableResults(f"{path}: {error}") from None


def _load(kind: Any, value: Any) -> Any:
    """``value`` (as json.loads made it) as an instance of the type ``kind``."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        known = {f.name for f in dataclasses.fields(kind)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"{kind.__name__} has no field {', '.join(sorted(unknown))}")
        return kind(**{name: _load(hints[name], item) for name, item in value.items()})
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        [kind] = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _load(kind, value)
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(args[0], item) for item in value)
        return tuple(_load(arg, item) for arg, item in zip(args, value, strict=True))
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        return [_load(item_kind, item) for item in value]
    if origin is dict:
        _, value_kind = typing.get_args(kind)
        return {key: _load(value_kind, item) for key, item in value.items()}
    if kind is float and isinstance(value, int):
        return value  # as written: an int is a float's value here, and reads back the same
    if not isinstance(value, kind):
        raise ValueError(f"expected {kind.__name__}, found {value!r}")
    return value
