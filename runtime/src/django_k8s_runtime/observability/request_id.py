"""Request ids: taken from a well-formed incoming X-Request-ID, else made here."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = b"x-request-id"
_VALID = re.compile(rb"[A-Za-z0-9._:\-]{8,128}")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _current.get()


def accept_or_make(incoming: bytes | None) -> str:
    """Trust an upstream id only if it is short and plain; anything else is replaced,
    so a client cannot inject newlines, markup or megabytes into every log line."""
    if incoming is not None and _VALID.fullmatch(incoming):
        return incoming.decode("ascii")
    return uuid.uuid4().hex


def bind(request_id: str) -> object:
    return _current.set(request_id)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
