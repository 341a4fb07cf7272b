"""The example's WebSocket consumers (Django Channels), routed in example/routing.py.

* ``EchoConsumer`` (/ws/echo/): what it receives, it sends back, text or bytes.
  Its answer is the client's acknowledgement that the message arrived.
* ``BroadcastConsumer`` (/ws/broadcast/): a text message from any member reaches
  every member, through the channel layer's group, so across workers and pods
  when the layer is Redis (CHANNEL_LAYER_URL).

When the server stops, a socket is closed with 1001 (going away) and
``disconnect()`` runs; a client reconnects (docs/shutdown.md).
"""

from __future__ import annotations

import logging

from channels.generic.websocket import AsyncWebsocketConsumer

logger = logging.getLogger(__name__)

BROADCAST_GROUP = "broadcast"
UNSUPPORTED_DATA = 1003  # RFC 6455: a kind of data the endpoint cannot accept


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        logger.info("echo socket closed with code %s", code)


class BroadcastConsumer(AsyncWebsocketConsumer):
    groups = [BROADCAST_GROUP]  # Channels joins it on connect and leaves it on disconnect

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.close(code=UNSUPPORTED_DATA)
            return
        await self.channel_layer.group_send(
            BROADCAST_GROUP, {"type": "broadcast.message", "text": text_data}
        )

    async def broadcast_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        logger.info("broadcast socket closed with code %s", code)
