"""Uvicorn's WebSocket protocol, fitted: a stopping worker says "going away" and
waits for the client's answer, and the application's disconnect handler runs.

The implementation is Uvicorn's ``websockets-sansio`` (what ``ws="auto"`` picks
when the ``websockets`` package is installed; see PROJECT.md for the choice).
What is changed, and why:

**Closing at shutdown.** When a worker stops gracefully (the pod's SIGTERM after
GUNICORN_SHUTDOWN_DELAY, SIGHUP, max-requests recycling), Uvicorn sends every
open socket a close frame with code 1012 (service restart) and closes the TCP
connection in the same breath, without waiting for the client's close frame.
Clients see a closing handshake that never completed: the ``websockets`` client
raises ``ConnectionClosedError``, browsers report ``wasClean: false``. And an
application still answering a message when the close comes gets an exception
from ``send()`` (``Unexpected ASGI message 'websocket.send', after sending
'websocket.close'``), so a Channels consumer dies before its ``disconnect()`` runs.

Here a stopping worker instead:

* sends **1001 (going away)**, the code RFC 6455 gives a server going down, which
  clients treat as a normal closure and reconnect on;
* delivers ``websocket.disconnect`` with 1001 to the application, after whatever
  it had already received, so its disconnect handler runs;
* drops what the application sends after the close frame went out (RFC 6455
  allows no data after it; a message the client never saw acknowledged, it sends
  again after reconnecting), until the application has read its disconnect;
  ``send()`` then raises, as on any closed socket;
* waits for the client's close frame (bounded by Uvicorn's close timeout, 10 s,
  and the worker's graceful timeout) and only then closes the connection.

Gunicorn's quick shutdown (SIGINT, SIGQUIT) goes through the same close, at once:
the worker exits about 0.1 s later without waiting for the answers.

**A refused handshake is not an error.** When the application answers a handshake
with an HTTP response (the ``websocket.http.response`` extension: the runtime's
400, 503 and 504), Uvicorn logs "ASGI callable returned without completing
handshake." at error level, as if it had failed; here the handshake counts as
complete once that response is.

**Handshakes are not logged here.** Uvicorn logs every handshake at info
(``"WebSocket /path?query" [accepted]``, ``403``) and the ``websockets`` library
adds ``connection open``: lines that repeat the access log's and carry the query
string, where browser clients, which cannot set headers, put their tokens. Here
only warnings and errors of the protocol are logged; the access log
(observability/websocket.py) has one line per socket, without the query.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

GOING_AWAY = 1001
GOING_AWAY_REASON = "server going away"


def _warnings_and_errors(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


# A child of Uvicorn's own logger, so its lines go where Uvicorn's go.
protocol_logger = logging.getLogger("uvicorn.error.websocket")
protocol_logger.addFilter(_warnings_and_errors)


class GoingAwayWebSocketProtocol(WebSocketsSansIOProtocol):
    _going_away = False
    _told_the_application = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = self.conn.logger = protocol_logger

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and self.initial_response is None:
            self._go_away()
            return
        super().shutdown()  # a handshake still being decided, or a close under way

    def _go_away(self) -> None:
        self._going_away = True
        self.stop_keepalive()
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": GOING_AWAY, "reason": GOING_AWAY_REASON}
        )
        self.conn.send_close(GOING_AWAY, GOING_AWAY_REASON)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # the client's close frame must still be read
            self.read_paused = False
            self.transport.resume_reading()
        # As after the application's own close: the client's close frame ends the
        # connection (Uvicorn's handle_close), or this timer does.
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    async def receive(self) -> Any:
        message = await super().receive()
        if self._going_away and message["type"] == "websocket.disconnect":
            self._told_the_application = True
        return message

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if self._going_away and kind in ("websocket.send", "websocket.close"):
            if kind == "websocket.send" and self._told_the_application:
                raise ClientDisconnected  # it knows the socket is gone: stop it
            return  # too late for the client: the close is under way
        await super().send(message)
        if kind == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True  # answered: refused, not failed
