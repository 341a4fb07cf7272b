"""RequestTimeout in-process: every branch of a request's deadline, in milliseconds.

The whole-server tests (test_worker.py) show a 504 through Gunicorn;
these show what happens around it: the application told its client is gone, the
one that ignores it cancelled after the grace, a response already under way, and
cancellations that are not ours to swallow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from django_k8s_runtime.server.timeout import BODY, RequestTimeout
from tests.support.asgi import Client, Seen, client, hello, http_scope, respond, run

pytestmark = pytest.mark.in_process  # no server: the layers driven in this process

DEADLINE = 0.05
GRACE = 0.2


def bounded(app, seconds: float | None = DEADLINE, grace: float = GRACE) -> RequestTimeout:
    return RequestTimeout(app, seconds=lambda: seconds, grace=grace)


async def serve(app, client: Client | None = None) -> tuple[Client, float]:
    """One request through ``app``, as Uvicorn would run it: in a task of its own."""
    client = client or Client()
    started = time.monotonic()
    await asyncio.create_task(app(http_scope("/slow"), client.receive, client.send))
    return client, time.monotonic() - started


def waits_for_disconnect(seen: Seen):
    """An application that listens for its client going away, as Django does."""

    async def app(scope, receive, send) -> None:
        seen.received.append(await receive())  # the request
        seen.received.append(await receive())  # blocks until the client is gone
        await respond(send, 200, b"too late")  # dropped: the client got its 504
        seen.finished = True

    return app


def ignores_disconnect(seen: Seen, seconds: float = 30):
    async def app(scope, receive, send) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            seen.cancelled = True
            raise
        seen.finished = True

    return app


def test_a_request_in_time_is_untouched(caplog) -> None:
    async def scenario():
        async with client(bounded(hello, seconds=5)) as http:
            return await http.get("/")

    response = run(scenario())
    assert (response.status_code, response.text) == (200, "hello")
    assert not [
        record for record in caplog.records if record.name == "django_k8s_runtime.server.timeout"
    ]


@pytest.mark.parametrize("seconds", [None, 0], ids=["unset", "zero"])
def test_without_a_timeout_requests_are_not_bounded(seconds) -> None:
    seen = Seen()
    _, elapsed = run(serve(bounded(ignores_disconnect(seen, 0.1), seconds=seconds)))
    assert seen.finished
    assert not seen.cancelled
    assert elapsed >= 0.1


def test_the_timeout_is_asked_at_each_request() -> None:
    """It comes from the worker, which exists only after the stack is built."""
    asked = []

    def seconds() -> float:
        asked.append(1)
        return 5

    async def scenario():
        async with client(RequestTimeout(hello, seconds=seconds)) as http:
            for _ in range(3):
                await http.get("/")

    run(scenario())
    assert len(asked) == 3


def test_at_the_deadline_the_client_gets_504_and_the_app_hears_it_is_gone(caplog) -> None:
    seen = Seen()
    with caplog.at_level(logging.ERROR, logger="django_k8s_runtime.server.timeout"):
        client_, elapsed = run(serve(bounded(waits_for_disconnect(seen))))
    assert client_.status == 504
    assert client_.body == BODY
    assert json.loads(client_.body) == {"error": "request timed out"}
    assert client_.headers[b"connection"] == b"close"
    assert client_.headers[b"content-length"] == str(len(BODY)).encode()
    assert seen.received[1] == {"type": "http.disconnect"}  # its waiting receive() was ended
    assert seen.finished  # it went on normally after that: not a cancellation
    assert len(client_.sent) == 2  # its own late response was dropped
    assert elapsed < GRACE  # no hard cancel was needed
    assert [r.getMessage() for r in caplog.records] == [
        "request exceeded the 0.05s timeout, answered 504: GET /slow"
    ]


def test_receive_after_the_deadline_says_disconnect_at_once() -> None:
    seen = Seen()

    async def app(scope, receive, send) -> None:
        seen.received.append(await receive())
        await asyncio.sleep(DEADLINE * 2)  # busy past the deadline, not listening
        seen.received.append(await receive())
        seen.finished = True

    client_, elapsed = run(serve(bounded(app)))
    assert client_.status == 504
    assert seen.received[1] == {"type": "http.disconnect"}
    assert seen.finished
    assert elapsed < GRACE


def test_an_app_that_ignores_the_disconnect_is_cancelled_after_the_grace() -> None:
    seen = Seen()

    async def scenario():
        client_, elapsed = await serve(bounded(ignores_disconnect(seen)))
        return client_, elapsed, asyncio.current_task().cancelling()

    client_, elapsed, cancelling = run(scenario())
    assert client_.status == 504  # answered at the deadline, not after the grace
    assert seen.cancelled
    assert not seen.finished
    assert DEADLINE + GRACE <= elapsed < DEADLINE + GRACE + 1
    assert cancelling == 0


def test_the_request_task_is_not_left_cancelled_by_the_hard_cancel() -> None:
    """RequestTimeout swallows its own cancellation: the task can go on (e.g. the
    observer outside it logs and counts the 504)."""
    seen, after = Seen(), []

    async def request() -> None:
        client_ = Client()
        await bounded(ignores_disconnect(seen))(http_scope("/slow"), client_.receive, client_.send)
        await asyncio.sleep(0)  # would raise CancelledError if a cancellation were pending
        after.append(asyncio.current_task().cancelling())

    run(request())
    assert seen.cancelled
    assert after == [0]


def test_a_stream_that_keeps_producing_is_never_cut(caplog) -> None:
    """Once the head is out the timeout bounds the quiet between parts, not the whole:
    server-sent events and long exports live past GUNICORN_TIMEOUT."""

    async def streams(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for number in range(8):  # 8 parts, DEADLINE / 2 apart: 4x the deadline in all
            await send({"type": "http.response.body", "body": b"%d" % number, "more_body": True})
            await asyncio.sleep(DEADLINE / 2)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    scope = http_scope("/events")
    client_ = Client()
    with caplog.at_level(logging.ERROR, logger="django_k8s_runtime.server.timeout"):
        started = time.monotonic()
        run(bounded(streams)(scope, client_.receive, client_.send))
        elapsed = time.monotonic() - started
    assert (client_.status, client_.body) == (200, b"01234567")
    assert client_.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert elapsed >= 4 * DEADLINE
    assert "ended_early" not in scope
    assert caplog.records == []


def test_a_stream_quiet_for_the_whole_timeout_is_cut_as_stalled(caplog) -> None:
    sent_after = []
    scope = http_scope("/slow")

    async def stalls(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part 1", "more_body": True})
        await asyncio.sleep(DEADLINE * 2)
        await send({"type": "http.response.body", "body": b"part 2", "more_body": True})
        sent_after.append("part 2")
        await asyncio.sleep(30)  # and never listens: cancelled after the grace

    async def scenario():
        client_ = Client()
        started = time.monotonic()
        await asyncio.create_task(bounded(stalls)(scope, client_.receive, client_.send))
        return client_, time.monotonic() - started

    with caplog.at_level(logging.ERROR, logger="django_k8s_runtime.server.timeout"):
        client_, elapsed = run(scenario())
    assert client_.status == 200  # the status could not change any more
    assert client_.body == b"part 1"  # nothing after the cut; the response never ends
    assert sent_after == ["part 2"]  # its send returned: dropped, not an error
    assert elapsed >= DEADLINE + GRACE
    assert scope["ended_early"] == "stalled"  # recorded with its 200, never as a 504
    assert [r.getMessage() for r in caplog.records] == [
        "response stalled: nothing sent for the 0.05s timeout, cut: GET /slow"
    ]


def test_the_servers_own_cancellation_is_not_swallowed() -> None:
    """Uvicorn cancels requests still running at its graceful timeout."""
    seen = Seen()

    async def scenario(after: float):
        client_ = Client()
        task = asyncio.create_task(
            bounded(ignores_disconnect(seen), grace=5)(
                http_scope("/slow"), client_.receive, client_.send
            )
        )
        await asyncio.sleep(after)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return client_

    assert run(scenario(after=DEADLINE / 2)).status is None  # before the deadline
    assert run(scenario(after=DEADLINE * 2)).status == 504  # after it, before the grace ends


def test_the_servers_cancellation_during_our_hard_cancel_goes_on() -> None:
    """The app cleans up after our hard cancel; the server cancels meanwhile. Both
    cancellations were asked for; only ours may be swallowed."""

    async def slow_cleanup(scope, receive, send) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # cleanup, interrupted by the server's cancel

    async def scenario():
        client_ = Client()
        task = asyncio.create_task(
            bounded(slow_cleanup)(http_scope("/slow"), client_.receive, client_.send)
        )
        await asyncio.sleep(DEADLINE + GRACE + 0.05)  # hard cancel done, cleanup running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())


def test_an_error_after_the_deadline_still_propagates() -> None:
    async def fails(scope, receive, send) -> None:
        await receive()
        await receive()  # disconnect, at the deadline
        raise RuntimeError("the application's own error")

    with pytest.raises(RuntimeError, match="own error"):
        run(serve(bounded(fails)))


def test_other_scopes_pass_through_untouched() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append((scope["type"], receive, send))

    async def receive():
        return {}

    async def send(message):
        return None

    run(bounded(app)({"type": "lifespan"}, receive, send))
    assert seen == [("lifespan", receive, send)]
