"""Request ids: taken from a well-formed incoming X-Request-ID, else made here.

A made id is a random (version 4) UUID in hex, as ``uuid.uuid4().hex`` writes it.
Asking the kernel for 16 random bytes per request is a system call each time;
the ids are cut from a larger draw instead, made again in a forked process, so
that no two workers ever hand out the same ids.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

HEADER = b"x-request-id"
_VALID = re.compile(rb"[A-Za-z0-9._:\-]{8,128}")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)

_IDS_PER_DRAW = 256
_VARIANT = "89ab89ab89ab89ab"  # RFC 4122's variant: the 17th hex digit is 8, 9, a or b
_drawn: list[str] = []


def current_request_id() -> str | None:
    return _current.get()


def accept_or_make(incoming: bytes | None) -> str:
    """Trust an upstream id only if it is short and plain; anything else is replaced,
    so a client cannot inject newlines, markup or megabytes into every log line."""
    if incoming is not None and _VALID.fullmatch(incoming):
        return incoming.decode("ascii")
    return make()


def make() -> str:
    """A new id: 32 hex digits of a random UUID, version 4."""
    try:
        return _drawn.pop()
    except IndexError:
        _draw()
        return _drawn.pop()


def _draw() -> None:
    digits = os.urandom(16 * _IDS_PER_DRAW).hex()
    _drawn.extend(
        f"{digits[i : i + 12]}4{digits[i + 13 : i + 16]}"
        f"{_VARIANT[int(digits[i + 16], 16)]}{digits[i + 17 : i + 32]}"
        for i in range(0, len(digits), 32)
    )


def _forget_drawn() -> None:
    _drawn.clear()  # a forked child draws its own


os.register_at_fork(after_in_child=_forget_drawn)


def bind(request_id: str) -> object:
    return _current.set(request_id)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
