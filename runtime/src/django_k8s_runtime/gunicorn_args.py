"""Gunicorn's command line (``GUNICORN_CMD_ARGS``), read with Gunicorn's own parser
and validators: never a hand-written parser that could disagree with Gunicorn's.

Gunicorn reads ``GUNICORN_CMD_ARGS`` itself, over the config module and under the
command line's own flags. The runtime reads it the same way, to check it with
everything else at start-up (``command_line.py`` holds it to the variables' rules).
A leaf: the environment's registry parses the variable with it.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django_k8s_runtime.parsers import Reason


class Invalid(Reason):
    """What Gunicorn would say about the arguments, in its own words."""


def _gunicorn_config() -> Any:
    try:
        from gunicorn import config
    except ValueError:  # its settings read WEB_CONCURRENCY with int() on import
        raise Invalid(
            "it cannot be checked while WEB_CONCURRENCY is not a whole number "
            "(Gunicorn stops on that first)"
        ) from None
    return config


def parse(words: Sequence[str]) -> argparse.Namespace:
    """Gunicorn's argument parser over ``words``; :class:`Invalid` instead of
    printing the usage and exiting."""
    parser = _gunicorn_config().Config().parser()

    def refuse(message: str = "", *args: Any) -> None:
        raise Invalid(message.strip() or "it makes Gunicorn exit")

    parser.error = refuse
    parser.exit = refuse  # --help, --version
    parser._print_message = lambda *args: None  # ...and their text
    parsed: argparse.Namespace = parser.parse_args(list(words))
    return parsed


class Settings(Mapping[str, Any]):
    """Gunicorn settings by name, frozen (a part of the configuration snapshot)."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in items.items()
        }

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __str__(self) -> str:
        return " ".join(f"{flag(name)}={_text(value)}" for name, value in self._items.items())


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def settings(text: str) -> Settings:
    """The Gunicorn settings ``GUNICORN_CMD_ARGS`` sets, by Gunicorn's name, as
    Gunicorn's validators leave them (``{"timeout": 0, "bind": ("0.0.0.0:9000",)}``)."""
    if not text.strip():
        return Settings({})
    try:
        words = shlex.split(text)
    except ValueError as error:  # an unclosed quote
        raise Invalid(str(error).lower()) from None
    arguments = parse(words)
    if arguments.args:
        # Gunicorn ignores an application named here (it takes the command line's).
        raise Invalid(f"Gunicorn ignores the application {arguments.args[0]!r} named here")
    config = _gunicorn_config().Config()
    found = {}
    for name, value in vars(arguments).items():
        if value is None or name == "args":
            continue
        try:
            config.set(name, value)
        except Exception as error:  # Gunicorn's validators raise several types
            raise Invalid(f"{flag(name)}: {error}") from None
        found[name] = config.settings[name].get()
    return Settings(found)


def flag(setting: str) -> str:
    """The long option of a Gunicorn setting (``graceful_timeout`` -> ``--graceful-timeout``)."""
    for known in _gunicorn_config().KNOWN_SETTINGS:
        if known.name == setting and known.cli:
            return str(known.cli[-1])
    return "--" + setting.replace("_", "-")


def application(argv: Sequence[str]) -> str | None:
    """The application Gunicorn's command line names (``mysite.asgi:application``), if any."""
    try:
        arguments = parse(argv)
    except Invalid:
        return None
    return arguments.args[0] if arguments.args else None
