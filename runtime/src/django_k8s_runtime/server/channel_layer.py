"""The channel layer (Channels' groups, over Redis with channels-redis) as a dependency
of the sockets that use it, as the database is of the requests that use it.

Channels gives every consumer a channel of its own on the layer, and listens on it
for the consumer's whole life, whether it ever joins a group or not. When the
layer's Redis went away, that listening failed in every consumer of the worker, one
after another: every socket was dropped without a close frame, each with a
traceback, the echo's as much as the broadcast's, while readiness stayed green.

Here each configured layer is wrapped (:func:`guard_channel_layers`, by the
composition root) so that an outage is a condition, not a crash:

* a consumer **in a group** (its broadcasts come through the layer) gets
  :class:`ChannelLayerUnavailable` from the layer; the handshake guard
  (server/websocket_guard.py) closes its socket with **1012** (service restart:
  reconnect after a short, random delay), or answers its handshake **503** when
  joining the group failed, without a traceback;
* a consumer in **no group** goes on serving its socket: its listening waits for
  the layer to come back (checked every ``RETRY_SECONDS``);
* leaving a group while the layer is away is given up (channels-redis forgets a
  member after its ``group_expiry``, a day by default), so the consumer's
  ``disconnect()`` still runs.

One warning line when a layer goes away, one line when it is back; each socket
closed has its access line (close code 1012). The readiness check ``channel_layer``
(health/checks.py, in HEALTH_CHECKS) makes a pod unready while its layer is away.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

logger = logging.getLogger(__name__)

SERVICE_RESTART = 1012  # RFC 6455 (IANA): the client may reconnect after a random delay
RETRY_SECONDS = 1.0


class ChannelLayerUnavailable(Exception):
    """The channel layer a socket relies on cannot be reached."""


def outage_errors() -> tuple[type[BaseException], ...]:
    """What a layer raises when its server cannot be reached: the network's errors, and
    redis-py's own (which are not OSErrors)."""
    found: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from redis import exceptions
    except ImportError:
        pass
    else:
        found += [exceptions.ConnectionError, exceptions.TimeoutError, exceptions.BusyLoadingError]
    return tuple(found)


class GuardedChannelLayer:
    """A project's channel layer as its consumers see it; everything but the calls
    that reach the layer's server is the layer's own."""

    def __init__(self, layer: Any, alias: str) -> None:
        self._layer = layer
        self._alias = alias
        self._outage = outage_errors()
        self._groups: dict[str, set[str]] = {}  # channel -> the groups it joined here
        self._down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layer, name)

    @property
    def layer(self) -> Any:
        """The project's layer itself."""
        return self._layer

    async def receive(self, channel: str) -> Any:
        while True:
            try:
                message = await self._layer.receive(channel)
            except self._outage as error:
                self._went_away(error)
                if self._groups.get(channel):
                    raise ChannelLayerUnavailable(self._alias) from None
                # No group: nothing of this socket depends on the layer but what is
                # sent to its own channel, which waits for the layer to come back.
                await asyncio.sleep(RETRY_SECONDS * random.uniform(1, 1.5))  # noqa: S311
                continue
            self._is_back()
            return message

    async def group_add(self, group: str, channel: str) -> None:
        await self._reach(self._layer.group_add(group, channel))
        self._groups.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        joined = self._groups.get(channel)
        if joined is not None:
            joined.discard(group)
            if not joined:
                del self._groups[channel]
        try:
            await self._layer.group_discard(group, channel)
        except self._outage as error:
            self._went_away(error)  # given up: the layer forgets it at group_expiry
        else:
            self._is_back()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._reach(self._layer.send(channel, message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._reach(self._layer.group_send(group, message))

    async def _reach(self, call: Any) -> Any:
        try:
            result = await call
        except self._outage as error:
            self._went_away(error)
            raise ChannelLayerUnavailable(self._alias) from None
        self._is_back()
        return result

    def _went_away(self, error: BaseException) -> None:
        if self._down:
            return
        self._down = True
        reason = " ".join(str(error).split()) or type(error).__name__
        logger.warning(
            "Channel layer %r unavailable (%s: %s): sockets in a group are closed with %d, "
            "handshakes that join one answered 503, others wait for it",
            self._alias,
            type(error).__name__,
            reason,
            SERVICE_RESTART,
        )

    def _is_back(self) -> None:
        if self._down:
            self._down = False
            logger.info("Channel layer %r is available again", self._alias)


def guard_channel_layers() -> None:
    """Wrap every layer in the project's CHANNEL_LAYERS, as Channels' consumers will
    find it (``get_channel_layer()``). Django must be set up."""
    from channels.layers import channel_layers
    from django.conf import settings

    for alias in getattr(settings, "CHANNEL_LAYERS", None) or {}:
        layer = channel_layers[alias]
        if not isinstance(layer, GuardedChannelLayer):
            channel_layers.set(alias, GuardedChannelLayer(layer, alias))
