"""The registry: variables declared by name, read from the environment once into a
frozen :class:`Snapshot`, and the one-line error every bad value gets.

The public face is :mod:`.env`, which declares the runtime's variables here and
re-exports what a project uses; the rest of the runtime imports :mod:`.env`, so
that the runtime's variables are always declared before anything is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django_k8s_runtime.masking import HIDDEN, names_a_secret, redact_url
from django_k8s_runtime.parsers import Parser, Reason


class ConfigError(SystemExit):
    """Operator mistakes in the environment: one clear line each, non-zero exit."""

    def __init__(self, *messages: str) -> None:
        super().__init__("\n".join(f"configuration error: {message}" for message in messages))
        self.messages = messages
        self.message = messages[0]


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None  # the raw default, as the reference shows it; None: no default
    parser: Parser[Any]
    help: str
    section: str
    fallback: str | None = None  # another variable read when this one is unset

    def read(self, environ: Mapping[str, str]) -> Setting:
        """This variable's parsed value and where it came from; ConfigError if invalid."""
        raw: str | None
        if self.name in environ:
            source, raw = self.name, environ[self.name]
        elif self.fallback and self.fallback in environ:
            source, raw = self.fallback, environ[self.fallback]
        else:
            source, raw = DEFAULT, self.default
        if raw is None:  # unset, and no default: required (or optional) without a value
            return Setting(None, source)
        try:
            return Setting(self.parser.parse(raw), source)
        except (ValueError, TypeError) as error:
            secret = names_a_secret(self.name) or names_a_secret(source)
            shown = HIDDEN if secret else repr(redact_url(raw))
            named = self.name
            if source == self.fallback:
                named = f"{self.fallback} (read because {self.name} is unset)"
            why = f"{error}; " if isinstance(error, Reason) else ""
            raise ConfigError(
                f"{named}={shown} is not valid: {why}expected {self.parser.allowed}."
            ) from None


DEFAULT = "default"  # Setting.source when neither the variable nor its fallback is set


@dataclass(frozen=True)
class Setting:
    """One variable's parsed value and its source: the variable's own name, the
    fallback's name (WEB_CONCURRENCY) or ``"default"``."""

    value: Any
    source: str


REGISTRY: dict[str, Variable] = {}
# Families of variables read only as declared (OTEL_): one of them set but not declared
# is listed by the snapshot (Snapshot.undeclared), for a rule to refuse.
RESERVED_PREFIXES: set[str] = set()


def declare(
    name: str,
    default: str | None,
    parser: Parser[Any],
    help: str,
    section: str,
    fallback: str | None = None,
) -> Variable:
    """Declare a variable, once (every variable is declared once, where it is read): a
    second declaration of a name is refused, unless it is the very same one (its module
    imported again)."""
    variable = Variable(name, default, parser, help, section, fallback)
    declared = REGISTRY.get(name)
    if declared is not None and declared != variable:
        raise ValueError(
            f"{name} is declared twice (every variable is declared once, where it is "
            f"read): first in section {declared.section!r}, again in {section!r}."
        )
    REGISTRY[name] = variable
    return variable


class Snapshot(Mapping[str, Any]):
    """Every declared variable, parsed once: ``snapshot.GUNICORN_TIMEOUT`` or
    ``snapshot["GUNICORN_TIMEOUT"]``, and ``snapshot.source(name)`` for where it came from.

    Frozen: nothing changes it after :func:`load`. A variable that did not parse
    has no value; reading it raises its ConfigError, so a consumer that runs before
    (or without) the start-up check still stops with the right line. Its text is
    one of :attr:`problems`.
    """

    __slots__ = ("_invalid", "_names", "_settings", "_undeclared")

    def __init__(
        self,
        settings: Mapping[str, Setting],
        invalid: Mapping[str, str],
        undeclared: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "_settings", MappingProxyType(dict(settings)))
        object.__setattr__(self, "_invalid", MappingProxyType(dict(invalid)))
        object.__setattr__(self, "_names", tuple(name for name in REGISTRY if name in self))
        object.__setattr__(self, "_undeclared", tuple(undeclared))

    def __getitem__(self, name: str) -> Any:
        if name in self._invalid:
            raise ConfigError(self._invalid[name])
        return self._settings[name].value

    def __contains__(self, name: object) -> bool:
        return name in self._settings or name in self._invalid

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # a slot not set yet (copying), never a variable
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{name} is not a declared variable") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a configuration snapshot cannot be changed")

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle build a new one
        return Snapshot, (dict(self._settings), dict(self._invalid), self._undeclared)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def source(self, name: str) -> str:
        """Where the value came from: the variable, its fallback, or ``"default"``."""
        if name in self._invalid:
            raise ConfigError(self._invalid[name])
        source: str = self._settings[name].source
        return source

    @property
    def undeclared(self) -> tuple[str, ...]:
        """The names of variables set in a reserved family (``RESERVED_PREFIXES``) that
        no declaration reads, sorted; never their values."""
        undeclared: tuple[str, ...] = self._undeclared
        return undeclared

    @property
    def problems(self) -> list[str]:
        """One line for each variable whose text did not parse, in declaration order."""
        return list(self._invalid.values())


def load(environ: Mapping[str, str] | None = None) -> Snapshot:
    """Read and parse every declared variable once (from ``os.environ`` by default)."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Setting] = {}
    invalid: dict[str, str] = {}
    for name, variable in REGISTRY.items():
        try:
            settings[name] = variable.read(environ)
        except ConfigError as error:
            invalid[name] = error.message
    prefixes = tuple(RESERVED_PREFIXES)
    undeclared = sorted(
        name for name in environ if prefixes and name.startswith(prefixes) and name not in REGISTRY
    )
    return Snapshot(settings, invalid, tuple(undeclared))


_snapshots: dict[int, Snapshot] = {}


def snapshot() -> Snapshot:
    """This process's configuration, loaded on first use and then kept.

    Loaded lazily, not at import, so that a settings module may still fill in a
    default (a test site's settings do) before anything reads the environment. A
    project's own variables are declared when its settings are imported, which may
    be after the runtime's first read (the Gunicorn config): the snapshot is then
    loaded again, once, with them. Workers forked from the Gunicorn master inherit
    the master's snapshot."""
    size = len(REGISTRY)
    if size not in _snapshots:
        _snapshots.clear()
        _snapshots[size] = load()
    return _snapshots[size]
