"""The parsers a variable is declared with (:func:`.env.declare`): each turns the
raw text into a value or raises ``ValueError``, and says in ``allowed`` what it
accepts, for the error line and the variables reference. A project writes one of
its own the same way: a :class:`Parser` of a function and that phrase.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Parser[T]:
    """``parse`` turns the text into the value (``ValueError`` if it cannot);
    ``allowed`` ends the error line's "expected ..." and fills the reference's
    "Allowed" column."""

    parse: Callable[[str], T]
    allowed: str


class Reason(ValueError):
    """Raised by a parser that can say why a value is wrong, not only what is allowed
    (Gunicorn's parser, for ``GUNICORN_CMD_ARGS``)."""


def integer(minimum: int, maximum: int | None = None, unit: str = "") -> Parser[int]:
    def parse(text: str) -> int:
        stripped = text.strip()
        if not stripped.lstrip("-").isdigit():
            raise ValueError
        number = int(stripped)
        if number < minimum or (maximum is not None and number > maximum):
            raise ValueError
        return number

    noun = f"a whole number of {unit}" if unit else "a whole number"
    if maximum is None:
        allowed = f"{noun}, at least {minimum}"
    else:
        allowed = f"{noun} from {minimum} to {maximum}"
    return Parser(parse, allowed)


def seconds(minimum: float, maximum: float) -> Parser[float]:
    def parse(text: str) -> float:
        number = float(text.strip())  # ValueError for junk
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise ValueError
        return number

    return Parser(parse, f"a number of seconds from {minimum:g} to {maximum:g}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError


boolean = Parser(_parse_boolean, "true or false (also 1/0, yes/no, on/off)")


def choice(*options: str) -> Parser[str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in options:
            raise ValueError
        return lowered

    return Parser(parse, "one of " + ", ".join(options))


def subset(*options: str) -> Parser[tuple[str, ...]]:
    """A comma-separated selection from ``options``; empty selects none."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip().lower() for item in text.split(",") if item.strip())
        if any(item not in options for item in items) or len(set(items)) != len(items):
            raise ValueError
        return items

    return Parser(parse, "a comma-separated list of " + ", ".join(options) + " (or empty)")


_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
CALLABLE_REFERENCE = re.compile(rf"{_DOTTED}:{_DOTTED}")


def checks(*builtin: str) -> Parser[tuple[str, ...]]:
    """A comma-separated selection from ``builtin``, and ``package.module:callable``
    references (whether each imports is checked once Django is set up)."""

    def parse(text: str) -> tuple[str, ...]:
        items = []
        for item in (item.strip() for item in text.split(",")):
            if not item:
                continue
            if item.lower() in builtin:
                items.append(item.lower())
            elif CALLABLE_REFERENCE.fullmatch(item):
                items.append(item)
            else:
                raise ValueError
        if len(set(items)) != len(items):
            raise ValueError
        return tuple(items)

    return Parser(
        parse,
        "a comma-separated list of " + ", ".join(builtin) + " and package.module:callable "
        "entries (or empty)",
    )


def text(*, empty_ok: bool = False) -> Parser[str]:
    def parse(value: str) -> str:
        if not value.strip() and not empty_ok:
            raise ValueError
        return value.strip()

    return Parser(parse, "any text" if empty_ok else "a non-empty text")


def comma_list() -> Parser[tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in value.split(",") if item.strip())

    return Parser(parse, "a comma-separated list")


def host_list() -> Parser[tuple[str, ...]]:
    """Like :func:`comma_list`, but text that names no item (``" , "``) is a mistake."""

    def parse(value: str) -> tuple[str, ...]:
        items = comma_list().parse(value)
        if value.strip() and not items:
            raise ValueError
        return items

    return Parser(parse, "a comma-separated list of host names (or empty)")


def _parse_cache_url(value: str) -> str:
    from urllib.parse import urlsplit

    stripped = value.strip()
    if stripped:
        parts = urlsplit(stripped)
        if parts.scheme in ("redis", "rediss"):
            if not parts.hostname:
                raise ValueError
            int(parts.port or 6379)  # ValueError for a port that is not a number
        elif parts.scheme != "unix" or not parts.path.startswith("/"):
            raise ValueError
    return stripped


cache_url = Parser(
    _parse_cache_url, "a redis://, rediss:// or unix:// URL such as redis://redis:6379/0, or empty"
)


def _parse_bind_host(value: str) -> str:
    stripped = value.strip()
    ipaddress.ip_address(stripped)  # ValueError unless an IPv4/IPv6 literal
    return stripped


bind_host = Parser(_parse_bind_host, "an IPv4 or IPv6 address such as 0.0.0.0 or ::")


def _parse_workers(value: str) -> int | str:
    stripped = value.strip().lower()
    if stripped == "auto":
        return "auto"
    return integer(1, 1024).parse(stripped)


workers = Parser(_parse_workers, "a whole number from 1 to 1024, or auto")


MIN_WORKER_MEMORY_MIB = 64  # a worker with the app loaded takes about that already


def _parse_worker_memory(text: str) -> int:
    number = integer(0, 1_048_576).parse(text)
    if 0 < number < MIN_WORKER_MEMORY_MIB:
        raise ValueError
    return number


worker_memory = Parser(
    _parse_worker_memory,
    f"0 (off), or a whole number of MiB from {MIN_WORKER_MEMORY_MIB} to 1048576",
)


def _parse_secret_key(value: str) -> str:
    # The same rule as Django's security.W009, so `check --deploy` stays clean.
    if len(value) < 50 or len(set(value)) < 5 or value.startswith("django-insecure"):
        raise ValueError
    return value


secret_key = Parser(
    _parse_secret_key,
    "at least 50 characters with 5 or more distinct ones, not starting with 'django-insecure'",
)


def _parse_forwarded_ips(value: str) -> str:
    stripped = value.strip()
    if stripped == "*":
        return stripped
    items = [item.strip() for item in stripped.split(",") if item.strip()]
    if not items:
        raise ValueError
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return ",".join(items)


forwarded_ips = Parser(
    _parse_forwarded_ips, "* or a comma-separated list of IP addresses or CIDR networks"
)


def _parse_path_or_empty(value: str) -> str:
    stripped = value.strip()
    if stripped and not stripped.startswith("/"):
        raise ValueError
    return stripped


absolute_path_or_empty = Parser(_parse_path_or_empty, "an absolute path, or empty")


def _parse_http_url_or_empty(value: str) -> str:
    from urllib.parse import urlsplit

    stripped = value.strip()
    if stripped:
        parts = urlsplit(stripped)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
    return stripped


http_url_or_empty = Parser(_parse_http_url_or_empty, "an http:// or https:// URL, or empty")
