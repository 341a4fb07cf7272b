"""The test site's WebSocket consumers (tests/site/routing.py routes them): an echo, a
broadcast through the channel layer's group, and consumers that misbehave on purpose.

Each plain one logs its ``disconnect()``, so a test sees that it ran and with which code.
"""

from __future__ import annotations

import asyncio
import logging
import os

from channels.generic.websocket import AsyncWebsocketConsumer

logger = logging.getLogger(__name__)

BROADCAST_GROUP = "broadcast"


class Echo(AsyncWebsocketConsumer):
    """What it receives, it sends back, text or bytes."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        logger.info("echo socket closed with code %s", code)


class Broadcast(AsyncWebsocketConsumer):
    """A text message from any member reaches every member, through the channel
    layer's group (across workers when the layer is Redis: CHANNEL_LAYER_URL)."""

    groups = [BROADCAST_GROUP]  # Channels joins it on connect and leaves it on disconnect

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.close(code=1003)  # RFC 6455: a kind of data it cannot accept
            return
        await self.channel_layer.group_send(
            BROADCAST_GROUP, {"type": "broadcast.message", "text": text_data}
        )

    async def broadcast_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        logger.info("broadcast socket closed with code %s", code)


class SlowToAccept(AsyncWebsocketConsumer):
    """Decides on its handshake only after a minute: the handshake's deadline ends it."""

    async def connect(self) -> None:
        await asyncio.sleep(60)
        await self.accept()


class WorkerPid(AsyncWebsocketConsumer):
    """Tells the client which worker holds its socket, then echoes."""

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=str(os.getpid()))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class SlowReader(AsyncWebsocketConsumer):
    """Takes a minute over each message: what its client sends waits for it."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await asyncio.sleep(60)
