"""Readiness checks that misbehave on purpose (HEALTH_CHECKS=tests.site.checks:...)."""

import asyncio
import time


def hang() -> None:
    """A synchronous check whose dependency never answers."""
    time.sleep(3600)


async def hang_async() -> None:
    await asyncio.sleep(3600)


def down() -> bool:
    return False


class Checks:
    @staticmethod
    def nested() -> None:
        """Reachable as tests.site.checks:Checks.nested."""


not_a_function = 42
