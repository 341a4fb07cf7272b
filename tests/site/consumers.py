"""WebSocket consumers only tests need (tests/site/routing.py routes them beside the example's)."""

from __future__ import annotations

import asyncio
import os

from channels.generic.websocket import AsyncWebsocketConsumer


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
