"""The hostile-clients phase of ``make bench`` (issue 29): what a worker's memory comes
to when clients misbehave (``attackers.py``), each attack alone and then all of them
at once (the mix); ours against Uvicorn standalone and Daphne serving Django's own
handler and Channels' consumers (``bench/channels_asgi.py``).

Each attack runs against a freshly started server with one worker, with its
defaults, pinned to the server core: a warm-up (a request, a socket and a compressed
message, so first-use allocations are not counted), the worker's RSS, its peak
(``VmHWM``) reset, the attack for ``seconds`` while another client asks for
``/api/hello`` every 0.2 s, the attackers gone, and two seconds later the peak and
the RSS read (memory that is not given back stays). Every attack is bounded in time
and bytes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import attackers, machine, processes, results
from bench.contenders import BIN
from bench.results import Attack
from bench.results import HostileOptions as Options
from harness.processes import free_port
from tests.support import raw_websocket as raw

CHANNELS_APP = "bench.channels_asgi:application"
ATTACKS = (*attackers.ATTACKS, attackers.MIX)
# Ours as the image runs it, but for what the other servers lack too.
OURS_ENVIRONMENT = {"GUNICORN_WORKERS": "1", "HEALTH_CHECKS": ""}
SETTLE_SECONDS = 2


@dataclass(frozen=True)
class HostileContender:
    key: str
    label: str
    argv: Callable[[int], list[str]]  # port -> command line
    note: str

    def recorded(self) -> results.Contender:
        role = "ours" if self.key == "ours" else "peer"
        return results.Contender(self.key, self.label, role, self.note)


def _ours(port: int) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "-c",
        "python:django_k8s_runtime.gunicorn",
        "config.asgi:application",
    ]


def _uvicorn(port: int) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        CHANNELS_APP,
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio"),
        *("--lifespan", "off", "--no-access-log"),
    ]


def _daphne(port: int) -> list[str]:
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", CHANNELS_APP]


CONTENDERS = (
    HostileContender(
        "ours",
        "ours: Gunicorn + django-k8s-runtime",
        _ours,
        "`config.asgi:application`, one worker, every bound at its default",
    ),
    HostileContender(
        "uvicorn",
        "Uvicorn standalone (Django's handler)",
        _uvicorn,
        "`uvicorn bench.channels_asgi:application --ws websockets-sansio`, uvloop + "
        "httptools, its defaults",
    ),
    HostileContender(
        "daphne",
        "Daphne (Django's handler)",
        _daphne,
        "`daphne bench.channels_asgi:application`, its defaults",
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
) -> results.HostileResults:
    """Every attack against every contender; ``environ`` is the common environment."""
    clock = machine.Clock()
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    environ = {**environ, **OURS_ENVIRONMENT}
    found = []
    for name in ATTACKS:
        say(f"Hostile clients: {name}, {options.seconds:g} s")
        for contender in CONTENDERS:
            with _serving(contender, environ, logs, server_cpus) as (process, port):
                attack = _attack(contender.key, name, process, port, options)
            found.append(attack)
            say(
                f"  {contender.key:<8} "
                + (
                    f"not run: {attack.skipped}"
                    if attack.skipped
                    else f"peak +{attack.grown_mib:,.1f} MiB over {attack.baseline_mib:.0f}, "
                    f"{attack.after_mib:.0f} MiB after; {attack.sent_mib:,.1f} MiB sent; "
                    f"/api/hello {attack.others_ok}/{attack.others_asked} within 2 s"
                    + (f" ({attack.note})" if attack.note else "")
                )
            )
    return results.HostileResults(
        run=clock.info({}),
        options=options,
        contenders=tuple(c.recorded() for c in CONTENDERS),
        environment=OURS_ENVIRONMENT,
        attacks=found,
    )


def _attack(
    key: str, name: str, process: subprocess.Popen[bytes], port: int, options: Options
) -> Attack:
    worker = _worker(process)
    _warm_up(port)
    baseline = processes.status_mib(worker)
    processes.reset_peak_memory(worker)
    held = attackers.Held()
    try:
        with attackers.Bystander(port) as bystander:
            sent, left_out = attackers.attack(name, port, options, held)
    except attackers.NotApplicable as why:
        return Attack(key, name, skipped=str(why))
    finally:
        held.close()
    time.sleep(SETTLE_SECONDS)  # what the server does, and frees, once its clients are gone
    return Attack(
        key,
        name,
        baseline_mib=round(baseline, 1),
        peak_mib=round(processes.status_mib(worker, "VmHWM"), 1),
        after_mib=round(processes.status_mib(worker), 1),
        sent_mib=round(sent / attackers.MIB, 2),
        others_ok=bystander.answered,
        others_asked=bystander.asked,
        others_slowest_ms=round(bystander.slowest * 1000, 1),
        note="; ".join(left_out),
    )


def _worker(process: subprocess.Popen[bytes]) -> int:
    """The one process that serves: Gunicorn's worker, or the server itself."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        served = processes.workers(process.pid)
        if len(served) == 1:
            return served[0]
        time.sleep(0.1)
    raise RuntimeError(f"not one worker: {processes.workers(process.pid)}")


def _warm_up(port: int) -> None:
    """First-use costs (imports, zlib's tables, the first request) before the baseline."""
    for _ in range(3):
        processes.get_status(port, "/api/hello")
    with contextlib.closing(
        raw.connect(port, attackers.ECHO, deflate=True, origin="http://127.0.0.1")
    ) as sock:
        if sock.status == 101:
            compressed = b"permessage-deflate" in sock.response.lower()
            message = b"\0" * attackers.MIB
            sock.send(
                raw.compressed_message(message) if compressed else raw.frame(raw.BINARY, message)
            )
            sock.send(raw.close_frame(1000))
            with contextlib.suppress(OSError):
                sock.read_to_end(timeout=10)
    time.sleep(0.5)


@contextlib.contextmanager
def _serving(
    contender: HostileContender, environ: dict[str, str], logs: Path, cpus: set[int] | None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = logs / f"hostile-{contender.key}.log"
    process = processes.start(
        contender.argv(port), {**environ, "GUNICORN_PORT": str(port)}, log, cpus
    )
    try:
        try:
            processes.wait_ready(process, port, "/api/hello", time.monotonic())
        except RuntimeError as error:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{contender.key} did not start: {error}\n{tail}") from None
        yield process, port
    finally:
        processes.stop(process)
