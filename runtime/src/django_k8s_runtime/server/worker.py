"""The Gunicorn worker: uvicorn-worker's UvicornWorker, fitted for Django in production.

What it changes, and why:

* **Lifespan off.** Django has no ASGI lifespan support; "auto" makes Uvicorn
  probe for it and log noise on every boot.
* **uvloop and httptools**, explicitly, so a missing wheel fails loudly instead of
  silently falling back to the slower pure-Python loop and parser.
* **No request lost at shutdown.** Uvicorn closes connections whose request has
  not fully arrived when a worker stops; :mod:`server.protocol` lets them finish.
* **Uvicorn's graceful timeout** comes from Gunicorn's ``graceful_timeout`` minus
  a margin. uvicorn-worker does not map it and Uvicorn's default waits forever, so
  in-flight tasks were never cancelled cleanly before Gunicorn's SIGKILL.
* **SIGQUIT really quits.** uvicorn-worker's handler only sets ``alive = False``,
  which nothing reads, so Gunicorn's quick shutdown (SIGINT/SIGQUIT to the master)
  hung until the graceful timeout. Here it makes Uvicorn exit at once.
* **A heartbeat that outlives the main loop.** Uvicorn notifies Gunicorn only from
  its main loop, which ends when shutdown begins; a worker draining a long request
  after ``max_requests`` or SIGHUP was then killed as "timed out" mid-request. The
  heartbeat here runs on the event loop until the process exits, so it stops only
  when the loop is truly blocked.
* **GUNICORN_TIMEOUT bounds requests**: the worker records Gunicorn's timeout (and
  how to tell it is stopping) in :mod:`server.worker_state`, which
  the composition root (``asgi.py``) hands to :class:`server.timeout.RequestTimeout`
  (and the probes).
* **A fixed pool of threads** (Gunicorn's ``threads``, GUNICORN_THREADS) runs
  synchronous views, one visit per request (:mod:`server.threads`,
  :mod:`server.handler`).
* **Gunicorn's request limits hold** (``limit_request_line``, ``limit_request_fields``,
  ``limit_request_field_size``): uvicorn-worker does not pass them on and httptools
  has none; :mod:`server.protocol` enforces them, with the connection's bounds in
  time and number (:attr:`UvicornWorker.bounds`, handed over by the Gunicorn
  config's ``post_fork``; ``worker_connections`` from Gunicorn).
* **Access log** is written by the application's observer, not by Uvicorn.
* **An application that refuses to load stops the server.** Without preloading,
  each worker imports the application; a project that stops on its configuration
  (a ``SystemExit``, which Gunicorn lets through) made the worker exit 1, and
  Gunicorn booted a replacement twice a second for ever. It exits with Gunicorn's
  boot-error code instead, so the master stops, once, non-zero.
* **A worker whose master is gone stops.** Killed with SIGKILL, the master cannot
  stop its workers, and they went on serving and holding the port. The heartbeat
  notices the new parent, as Gunicorn's own workers do, and stops gracefully.
* **Recycling by memory** (``WORKER_MAX_MEMORY_MIB``, :mod:`server.memory`): checked
  once a second on the event loop; a worker past it stops as max-requests makes it
  stop (Uvicorn's ``should_exit``: no new connections, in-flight requests finish).
* **Why it exits is told to the master** (:mod:`server.exits`), for the metrics:
  max requests, memory, or a stop it was asked for.
* **WebSockets when the application has them** (:mod:`server.websocket`): Uvicorn's
  sans-I/O protocol, closing with 1001 when the worker stops
  (:mod:`server.websocket_protocol`); otherwise none, as before.
* **No waiting on stuck threads at exit.** A synchronous view still running when
  the worker has finished shutting down (its response already abandoned) would
  keep the process alive; the worker exits without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.errors import AppImportError
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker as BaseUvicornWorker

from django_k8s_runtime.server import exits, memory, threads, websocket
from django_k8s_runtime.server.limits import ConnectionLimits, HeadLimits
from django_k8s_runtime.server.protocol import HttpProtocol
from django_k8s_runtime.server.worker_state import this_worker

# Uvicorn cancels what is still running this long before Gunicorn would SIGKILL.
GRACEFUL_MARGIN_SECONDS = 1.0
# A worker whose master is gone notices within this long.
MASTER_CHECK_SECONDS = 1.0
# A worker that failed to boot after another did waits this long for the master to stop it.
BOOT_ERROR_WAIT_SECONDS = 10.0
_boot_error_claim: socket.socket | None = None


def uvicorn_graceful_timeout(gunicorn_graceful_timeout: float) -> float:
    return max(0.0, gunicorn_graceful_timeout - GRACEFUL_MARGIN_SECONDS)


def heartbeat_interval(gunicorn_timeout: float) -> float:
    """Notify often enough that one late tick never looks like a hung worker."""
    return min(max(gunicorn_timeout / 4, 0.1), 5.0)


class _Server(Server):
    """Uvicorn's server, noting for the master why it stops (a signal, or its request
    limit) when it decides to; and the worker's periodic work runs a last time once
    every request is done (a worker stopped by SIGTERM dies of the signal Uvicorn
    re-raises after that)."""

    def __init__(self, config: Any, worker: Any) -> None:
        super().__init__(config=config)
        self._worker = worker

    def handle_exit(self, sig: int, frame: Any) -> None:
        exits.note(self._worker, "stopped")
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        leaving = await super().on_tick(counter)
        if leaving and not self.should_exit:  # only the request limit ends it so
            exits.note(self._worker, "max_requests")
        return leaving

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        this_worker.finished()
        _flush_logs()  # lines that wait to be written together: a worker stopped by
        # SIGTERM dies of the signal Uvicorn re-raises, without logging's own flush


class UvicornWorker(BaseUvicornWorker):  # type: ignore[misc] # uvicorn-worker is untyped
    CONFIG_KWARGS = {"loop": "uvloop", "http": HttpProtocol, "lifespan": "off"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = uvicorn_graceful_timeout(self.cfg.graceful_timeout)
        self.config.access_log = False
        self.config.server_header = False  # do not advertise the server software
        self.config.callback_notify = None  # replaced by _heartbeat()
        self.server: Server | None = None

    bounds: ConnectionLimits | None = None  # set after the fork (django_k8s_runtime.gunicorn)
    max_memory: int | None = None  # bytes of RSS (WORKER_MAX_MEMORY_MIB); set after the fork

    def _install_sigquit_handler(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self._quit_now)

    def _quit_now(self) -> None:
        """Gunicorn's quick shutdown: stop serving and exit, abandoning requests."""
        exits.note(self, "stopped")
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = True

    def load_wsgi(self) -> None:
        try:
            super().load_wsgi()
        except SystemExit as refused:  # a project's configuration error, say
            if not refused.code:
                raise
            if isinstance(refused.code, str):
                print(refused.code, file=sys.stderr, flush=True)
            self._exit_boot_error()
        except AppImportError:
            raise  # Gunicorn's own answer: the application is not there (exit 4)
        except Exception:
            self.log.exception("Exception in worker process")
            self._exit_boot_error()

    def _exit_boot_error(self) -> None:
        """Exit with Gunicorn's boot-error code, once per server: when every worker
        fails at the same moment, Gunicorn's master, halting on the first, meets the
        second's code while stopping and dies of it with a traceback. The first to
        claim the server's name exits; the others wait for the master's SIGTERM."""
        global _boot_error_claim
        _boot_error_claim = socket.socket(socket.AF_UNIX)  # held until the process is gone
        # Abstract, so it vanishes with the process; named by the listening socket's
        # inode, which all workers of this master share and no other server has.
        inode = os.fstat(self.sockets[0].fileno()).st_ino if self.sockets else self.ppid
        try:
            _boot_error_claim.bind(f"\0django-k8s-runtime-boot-error-{inode}")
        except OSError:
            time.sleep(BOOT_ERROR_WAIT_SECONDS)  # the master's SIGTERM ends it first
        sys.exit(Arbiter.WORKER_BOOT_ERROR)

    async def _heartbeat(self) -> None:
        interval = min(heartbeat_interval(self.cfg.timeout), MASTER_CHECK_SECONDS)
        while True:
            self.notify()
            if os.getppid() != self.ppid and self.server is not None:
                self.log.warning(
                    "Master (pid: %s) is gone: worker stopping (pid: %s)", self.ppid, self.pid
                )
                self.server.should_exit = True
                return
            await asyncio.sleep(interval)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        # Gunicorn's request-head limits, which Uvicorn would ignore, and the
        # connection's bounds (server/protocol.py).
        self.config.http = functools.partial(
            HttpProtocol,
            limits=HeadLimits.from_gunicorn(self.cfg),
            bounds=self.bounds or ConnectionLimits(connections=self.cfg.worker_connections),
        )
        websocket.configure(self.config)  # the application is loaded: it has asked
        self.server = server = _Server(self.config, worker=self)
        if self.max_memory:
            this_worker.every(memory.CHECK_SECONDS, lambda: self._recycle_if_over_memory(server))
        this_worker.serving(
            request_timeout=self.cfg.timeout,
            threads=self.cfg.threads,
            connections=self.cfg.worker_connections,
            stopping=lambda: server.should_exit,
            recycle=lambda cause, why: self._recycle(server, cause, why),
        )
        self._install_sigquit_handler()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        # The plain sockets, not Gunicorn's wrappers: uvloop takes the socket over
        # when it closes the server, and closing a wrapper afterwards logs EBADF.
        listeners = [getattr(listener, "sock", listener) for listener in self.sockets]
        freeze_what_is_loaded()
        try:
            await server.serve(sockets=listeners)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        unfinished = [
            task
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task() and not task.done()
        ]
        if server.force_exit or unfinished:
            # Quick shutdown, or requests Uvicorn gave up on at its graceful
            # timeout: asyncio would now wait for each cancelled request, and a
            # cancelled synchronous view only returns when its thread is done.
            self._exit_now(
                "quick shutdown"
                if server.force_exit
                else f"{len(unfinished)} request task(s) cancelled at the graceful timeout"
            )

    def _recycle_if_over_memory(self, server: Server) -> None:
        if server.should_exit or not self.max_memory:
            return
        resident = memory.resident_bytes()
        if resident <= self.max_memory:
            return
        self.log.info(
            "Worker over its memory limit after %d requests: %d MiB resident, "
            "WORKER_MAX_MEMORY_MIB=%d; it finishes its requests and is replaced (pid: %s)",
            server.server_state.total_requests,
            resident // memory.MIB,
            self.max_memory // memory.MIB,
            self.pid,
        )
        exits.note(self, "memory")
        server.should_exit = True

    def _recycle(self, server: Server, cause: str, why: str) -> None:
        """Finish the requests held and be replaced (``leaks.py`` asks it)."""
        if server.should_exit:
            return
        self.log.error(
            "Worker recycled after %d requests: %s; it finishes its requests and is "
            "replaced (pid: %s)",
            server.server_state.total_requests,
            why,
            self.pid,
        )
        exits.note(self, cause)
        server.should_exit = True

    def run(self) -> None:
        super().run()
        busy = 0
        for pool in threads.pools_made():
            busy += pool.busy
            pool.shutdown()
        # Threads that are not daemons (e.g. a view's own) would make the
        # interpreter wait for them.
        stuck = busy + sum(
            1
            for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
        )
        if stuck:
            # E.g. a synchronous view that was answered 504 and is still running.
            self._exit_now(f"{stuck} request thread(s) still running")

    def _exit_now(self, reason: str) -> None:
        self.log.info("Worker exiting without waiting: %s (pid: %s)", reason, self.pid)
        _flush_logs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def freeze_what_is_loaded() -> None:
    """Keep what the worker loaded before its first request (Django, the project, the
    URLconf: most of the process's objects) out of the garbage collector's sight.

    Python's full collections scan every object the process holds; with a Django
    project loaded they cost a synchronous view about 10% of its CPU (188 against
    165 µs a request on ``/api/hello``, measured). What is loaded at start stays for
    the worker's life, so it is frozen (``gc.freeze``, as Python's documentation
    advises for pre-fork servers) after one collection, so no garbage is kept."""
    gc.collect()
    gc.freeze()


def _flush_logs() -> None:
    """Flush every logging handler, as logging does at a normal exit."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for each in loggers:
        for handler in getattr(each, "handlers", ()):  # not a logging.PlaceHolder's
            handler.flush()
