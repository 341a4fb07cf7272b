"""The worker's threads for synchronous Django code, started once and reused.

Django's own ASGI handler starts a new OS thread for every request (a
``ThreadSensitiveContext``) and hands each synchronous middleware method to it
separately. Here a worker keeps its threads and gives each request one job:
everything synchronous about it, start to end (see :mod:`server.handler`).

Two pools per worker:

* **requests**: ``GUNICORN_THREADS`` threads for requests to synchronous views,
  as Gunicorn's ``gthread`` worker has. A request waits for a free one.
* **background**: as many threads as there are jobs, for what must never wait
  for one of those: above all one thread per request to an ``async def`` view,
  for as long as it is in flight, which runs the synchronous middleware around
  the view and waits while the view itself runs on the event loop (as Django
  documents for a site with synchronous middleware); also a file's reads, a
  query's cancel, a project's readiness check. Idle threads are kept for reuse
  and end after ``IDLE_SECONDS``.

A job is handed over with as little machinery as possible, because the hop is
paid on every request: one ``SimpleQueue.put`` (C) to wake a thread, one
``call_soon_threadsafe`` to wake the event loop with the result. The job runs in
a copy of the caller's context, so the request id and everything else kept in
context variables follow it into the thread, as ``asgiref.sync_to_async`` does.
Its result goes to the event loop that submitted it, whichever that is: a process
may run several loops one after the other (a test suite runs one per test).

Each job ends with ``after_job`` in its thread (the composition root hands in
the giving back of the thread's database connections), so no thread the runtime
owns holds a connection while it is idle or after it has ended, whatever the job.
A job that will run long (a response streamed over an async iterator) may leave
its fixed pool (:meth:`ThreadPool.leave`), which starts another thread in its place.

What saturation metrics need costs nothing more per request: the pool counts its
busy threads and waiting jobs anyway (read once a second, not per request), and
reports a job's wait for a thread (``on_wait``) only for a job that found every
thread busy.

Inside these threads ``async_to_sync`` (which Django uses to call an async view
from synchronous middleware) runs its coroutine on the worker's event loop, as it
does inside Django's own ``sync_to_async`` threads: asgiref looks for that loop
in ``SyncToAsync.threadlocal`` (the runtime's tests of the request path fail if it
stops doing so). Without it every call would start a new event loop in a new thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync

T = TypeVar("T")
logger = logging.getLogger(__name__)
IDLE_SECONDS = 60.0
_STOP = None
_WEIGHT = 0.1  # of the newest job in ThreadPool.job_seconds


class Job:
    """One call handed to a pool: awaited through :attr:`future`; withdrawn with
    :meth:`ThreadPool.withdraw` as long as no thread has taken it."""

    __slots__ = (
        "args",
        "behind",
        "context",
        "function",
        "future",
        "loop",
        "queued_at",
        "taken",
        "withdrawn",
    )

    def __init__(
        self, future: asyncio.Future[Any], function: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.future = future
        self.loop = future.get_loop()
        self.context = contextvars.copy_context()
        self.function = function
        self.args = args
        self.queued_at = time.perf_counter()
        self.behind = False  # queued behind others: every thread was busy
        self.taken = False
        self.withdrawn = False


class ThreadPool:
    """``size`` threads, or with ``size=None`` as many as there are jobs in flight.

    A fixed pool also keeps what admission needs (:mod:`server.handler`): how many
    jobs wait for a thread, and how long a job has taken lately. ``on_wait`` is told
    how many seconds a job that found every thread busy waited for one (until a
    thread took it, or it was withdrawn); it runs in that thread, or in the
    withdrawing one. ``after_job`` runs in the thread after each job, whatever
    became of it."""

    def __init__(
        self,
        size: int | None,
        name: str,
        on_wait: Callable[[float], None] | None = None,
        after_job: Callable[[], None] | None = None,
    ) -> None:
        if size is not None and size < 1:
            raise ValueError("a thread pool needs at least one thread")
        self.size = size
        self.name = name
        self.on_wait = on_wait
        self.after_job = after_job
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job that no queued job has claimed
        self._busy = 0
        self._waiting = 0  # jobs queued that no thread has taken yet
        self._started = 0  # threads started so far (their names' numbers)
        self.job_seconds = 0.0  # a moving average of how long a job takes

    @property
    def busy(self) -> int:
        """Threads running a job now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Jobs queued for a thread that none has taken yet."""
        return self._waiting

    def has_idle_thread(self) -> bool:
        """Whether a job handed over now would start at once."""
        return self.size is None or self._busy + self._waiting < self.size

    def run(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``function(*args)`` in one of the threads; await the result."""
        return self.submit(function, *args).future

    def submit(self, function: Callable[..., Any], *args: Any) -> Job:
        """Hand ``function(*args)`` to a thread. Once a thread takes the job it runs
        to the end (a thread cannot be interrupted); until then it can be withdrawn."""
        job = Job(asyncio.get_running_loop().create_future(), function, args)
        with self._lock:
            job.behind = self.size is not None and self._busy + self._waiting >= self.size
            self._waiting += 1
        self._jobs.put(job)
        if self.size is None:
            self._claim_or_start()
        elif self._threads < self.size:
            while self._threads < self.size:
                self._start()
        return job

    def leave(self) -> None:
        """Called by a job running in one of this pool's threads: that thread ends
        with the job instead of taking another, and a fixed pool starts a thread in
        its place now, so a job that runs long (a stream) does not hold one of
        ``size``. A pool without a limit has no place to free: nothing happens."""
        if self.size is None or getattr(_this_thread, "pool", None) is not self:
            return
        _this_thread.pool = None
        with self._lock:
            self._threads -= 1
            self._busy -= 1
        self._start()

    def withdraw(self, job: Job) -> bool:
        """Take back a job no thread has taken yet (its future is then cancelled).
        False if a thread has it already: it runs, and its result will come."""
        with self._lock:
            if job.taken or job.withdrawn:
                return False
            job.withdrawn = True
            self._waiting -= 1
        if job.behind:
            self._report_wait(time.perf_counter() - job.queued_at)
        job.future.cancel()
        return True

    def _report_wait(self, seconds: float) -> None:
        if self.on_wait is None:
            return
        try:
            self.on_wait(seconds)
        except Exception:  # a metric must never take a request's thread down
            logger.exception("could not record a wait for a thread")

    def shutdown(self) -> None:
        """Let idle threads end; a thread still running a job ends after it."""
        for _ in range(self._threads):
            self._jobs.put(_STOP)

    def _claim_or_start(self) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                return
        self._start()

    def _start(self) -> None:
        with self._lock:
            self._threads += 1
            self._started += 1
            index = self._started
        threading.Thread(
            target=self._work,
            name=f"{self.name}-{index}",
            daemon=True,  # the worker decides at exit whether to wait (server/worker.py)
        ).start()

    def _work(self) -> None:
        _this_thread.pool = self
        SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
        try:
            while (job := self._next_job()) is not _STOP:
                # asgiref's async_to_sync in this thread runs on the job's loop.
                SyncToAsync.threadlocal.main_event_loop = job.loop
                self._run(job)
                del job
                if _this_thread.pool is not self:  # the job left the pool
                    return
        finally:
            SyncToAsync.threadlocal.main_event_loop = None
            if _this_thread.pool is self:
                with self._lock:
                    self._threads -= 1

    def _next_job(self) -> Any:
        if self.size is not None:
            return self._jobs.get()
        while True:
            try:
                return self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # no queued job counts on this thread
                        self._idle -= 1
                        return _STOP

    def _run(self, job: Job) -> None:
        with self._lock:
            if not job.withdrawn:
                job.taken = True
                self._waiting -= 1
            wanted = not job.withdrawn and not job.future.cancelled()
            if wanted:
                self._busy += 1
        started = time.perf_counter()
        if job.behind and not job.withdrawn:
            self._report_wait(started - job.queued_at)
        if not wanted:  # withdrawn, or its awaiting task was cancelled
            self._done()
            return
        try:
            outcome: tuple[Any, Any] = (_succeed, job.context.run(job.function, *job.args))
        except BaseException as error:  # handed to the awaiting task, as run_in_executor does
            outcome = (_fail, error)
        finally:
            self._after_job()
            self.job_seconds += (time.perf_counter() - started - self.job_seconds) * _WEIGHT
            if _this_thread.pool is self:  # not a job that left the pool
                with self._lock:
                    self._busy -= 1
        # Free before the result is handed back: a job submitted the moment the awaiting
        # task resumes finds this thread idle, not busy (and an unbounded pool gives
        # it this thread instead of starting another).
        if _this_thread.pool is self:
            self._done()
        # A loop that has closed has no one awaiting the result any more.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(outcome[0], job.future, outcome[1])

    def _after_job(self) -> None:
        if self.after_job is None:
            return
        try:
            self.after_job()
        except Exception:  # the next job must still find this thread
            logger.exception("the work after a job failed (thread %s)", self.name)

    def _done(self) -> None:
        if self.size is None:
            with self._lock:
                self._idle += 1


_this_thread = threading.local()  # .pool: the pool this thread serves


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)


# The pools of this worker process -------------------------------------------------

_pools: dict[str, ThreadPool] = {}


def requests_pool(
    size: int,
    on_wait: Callable[[float], None] | None = None,
    after_job: Callable[[], None] | None = None,
) -> ThreadPool:
    """The pool for synchronous views, made with ``size`` threads on first use;
    ``on_wait`` and ``after_job`` as :class:`ThreadPool` takes them."""
    pool = _pools.get("requests")
    if pool is None:
        pool = _pools["requests"] = ThreadPool(size, "request", on_wait, after_job)
    return pool


def background_pool(after_job: Callable[[], None] | None = None) -> ThreadPool:
    """The pool without a limit: the synchronous middleware around async views,
    and short work that must not wait for one of the requests pool's threads.
    ``after_job`` counts when the pool is made (the first call in a process)."""
    pool = _pools.get("background")
    if pool is None:
        pool = _pools["background"] = ThreadPool(None, "background", after_job=after_job)
    return pool


def leave_pool() -> None:
    """From a job: the thread running it leaves its pool (:meth:`ThreadPool.leave`)."""
    pool = getattr(_this_thread, "pool", None)
    if pool is not None:
        pool.leave()


def pools_made() -> list[ThreadPool]:
    """The pools this process made (the worker asks at exit)."""
    return list(_pools.values())


def _forget_pools() -> None:
    """Threads do not survive a fork: a worker makes its own pools."""
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools)
