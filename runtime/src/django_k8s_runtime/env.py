"""Every environment variable the runtime reads, declared once; and the means for a
project to declare its own the same way (:func:`declare`).

This module is the single source of truth, in the manner of Gunicorn's own
``config.py``: each variable has a name, a default, a parser that validates
it, and help text. The settings helpers, the Gunicorn config module and the
README tables are all derived from the declarations, so they cannot drift
(tests compare the READMEs with :func:`markdown_table`).

The environment is read and parsed once per process, into a frozen
:class:`Snapshot` (:func:`load`, or :func:`snapshot` for this process's own):
Gunicorn parses its settings once into ``cfg`` too, and consumers then read
``ENV.GUNICORN_TIMEOUT`` instead of parsing the text again at every use.

Bad input never falls back to a default: a value that does not parse is a
problem of the snapshot, one line naming the variable, the value and what is
allowed, and reading it raises :class:`ConfigError`. :mod:`.validation`
gathers these and every rule between values and reports them all at once.
``ConfigError`` is a ``SystemExit`` so that every entry point (``gunicorn``,
``manage.py``, a worker) prints those lines and exits non-zero without a
traceback.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote


class ConfigError(SystemExit):
    """Operator mistakes in the environment: one clear line each, non-zero exit."""

    def __init__(self, *messages: str) -> None:
        super().__init__("\n".join(f"configuration error: {message}" for message in messages))
        self.messages = messages
        self.message = messages[0]


# The choices more than one variable (or rule) offers, written once.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


# Parsers -------------------------------------------------------------------
# A parser turns the raw text into a value or raises ValueError; ``allowed``
# describes what it accepts, for error messages and for the README.


@dataclass(frozen=True)
class Parser:
    parse: Callable[[str], Any]
    allowed: str


class Reason(ValueError):
    """Raised by a parser that can say why a value is wrong, not only what is allowed
    (Gunicorn's parser, for ``GUNICORN_CMD_ARGS``)."""


def integer(minimum: int, maximum: int | None = None, unit: str = "") -> Parser:
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


def seconds(minimum: float, maximum: float) -> Parser:
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


def choice(*options: str) -> Parser:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in options:
            raise ValueError
        return lowered

    return Parser(parse, "one of " + ", ".join(options))


def subset(*options: str) -> Parser:
    """A comma-separated selection from ``options``; empty selects none."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip().lower() for item in text.split(",") if item.strip())
        if any(item not in options for item in items) or len(set(items)) != len(items):
            raise ValueError
        return items

    return Parser(parse, "a comma-separated list of " + ", ".join(options) + " (or empty)")


_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
CALLABLE_REFERENCE = re.compile(rf"{_DOTTED}:{_DOTTED}")


def checks(*builtin: str) -> Parser:
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


def text(*, empty_ok: bool = False) -> Parser:
    def parse(value: str) -> str:
        if not value.strip() and not empty_ok:
            raise ValueError
        return value.strip()

    return Parser(parse, "any text" if empty_ok else "a non-empty text")


def comma_list() -> Parser:
    def parse(value: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in value.split(",") if item.strip())

    return Parser(parse, "a comma-separated list")


def host_list() -> Parser:
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


def _parse_gunicorn_args(value: str) -> Mapping[str, Any]:
    from django_k8s_runtime import command_line

    return command_line.settings(value)


gunicorn_args = Parser(
    _parse_gunicorn_args, "Gunicorn's own command-line options (`gunicorn --help`), or empty"
)


# Declarations ---------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None  # the raw default, as the README shows it; None: no default
    parser: Parser
    help: str
    section: str
    fallback: str | None = None  # another variable read when this one is unset

    def read(self, environ: Mapping[str, str]) -> Setting:
        """This variable's parsed value and where it came from; ConfigError if invalid."""
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
            shown = "<hidden>" if "SECRET" in self.name else repr(redact_url(raw))
            named = self.name
            if source == self.fallback:
                named = f"{self.fallback} (read because {self.name} is unset)"
            why = f"{error}; " if isinstance(error, Reason) else ""
            raise ConfigError(
                f"{named}={shown} is not valid: {why}expected {self.parser.allowed}."
            ) from None


# Query parameters whose value is a secret: libpq's password and sslpassword, and the
# like in other services' URLs (token, secret, api_key...).
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|credential|api_?key|^auth|^key$", re.I)
MASK = "***"


def redact_url(text: str) -> str:
    """``text`` with the secrets of a URL in it starred: the userinfo's password
    (``postgres://app:***@db/app``) and the value of every query parameter that
    names a secret (``?password=***&sslpassword=***``). The one rule for every
    message, ``check-env`` line and error page that shows a URL."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    # The userinfo ends at the last "@" before the query; a password may hold
    # "/", "?" or "#" unescaped, so look before the first "?" and, failing that,
    # anywhere: starring too much beats showing a password.
    before_query = rest.split("?", 1)[0]
    at = before_query.rfind("@") if "@" in before_query else rest.rfind("@")
    if at >= 0:
        credentials, rest = rest[:at], rest[at:]
        if ":" in credentials:
            credentials = credentials.split(":", 1)[0] + ":" + MASK
        rest = credentials + rest
    path, question, query = rest.partition("?")
    if not question:
        return f"{scheme}://{path}"
    return f"{scheme}://{path}?" + "&".join(_redact_parameter(part) for part in query.split("&"))


def _redact_parameter(part: str) -> str:
    name, equals, _ = part.partition("=")
    if equals and _SECRET_PARAMETER.search(unquote(name)):
        return f"{name}={MASK}"
    return part


DEFAULT = "default"  # Setting.source when neither the variable nor its fallback is set


@dataclass(frozen=True)
class Setting:
    """One variable's parsed value and its source: the variable's own name, the
    fallback's name (WEB_CONCURRENCY) or ``"default"``."""

    value: Any
    source: str


REGISTRY: dict[str, Variable] = {}


def declare(
    name: str,
    default: str | None,
    parser: Parser,
    help: str,
    section: str,
    fallback: str | None = None,
) -> Variable:
    variable = Variable(name, default, parser, help, section, fallback)
    REGISTRY[name] = variable
    return variable


SERVER = "Server (Gunicorn + Uvicorn workers)"
DATABASE = "Database and cache"
HEALTH = "Health probes"
OPERATIONS = "Logs and metrics"
WEBSOCKETS = "WebSockets (when the application has a WebSocket part)"

# The five variables of the original request come first, with exactly its defaults.
GUNICORN_WORKERS = declare(
    "GUNICORN_WORKERS",
    "4",
    workers,
    "Number of Gunicorn worker processes. `auto` derives it from the container's CPU limit "
    "(cgroup quota, else CPU affinity). When unset, `WEB_CONCURRENCY` is used if set.",
    SERVER,
    fallback="WEB_CONCURRENCY",
)
GUNICORN_PORT = declare(
    "GUNICORN_PORT", "8000", integer(1, 65535), "Port Gunicorn listens on.", SERVER
)
GUNICORN_TIMEOUT = declare(
    "GUNICORN_TIMEOUT",
    "30",
    integer(1, 3600, "seconds"),
    "Request processing timeout in seconds: a request still running after it is answered "
    "504. A worker whose event loop is blocked this long is killed and replaced.",
    SERVER,
)
GUNICORN_MAX_REQUESTS = declare(
    "GUNICORN_MAX_REQUESTS",
    "0",
    integer(0, 10_000_000),
    "Requests a worker serves before it is gracefully replaced; 0 means never.",
    SERVER,
)
GUNICORN_MAX_REQUESTS_JITTER = declare(
    "GUNICORN_MAX_REQUESTS_JITTER",
    "0",
    integer(0, 10_000_000),
    "Random extra requests (0 to this) added per worker to `GUNICORN_MAX_REQUESTS`, so "
    "workers do not all restart at once. Needs `GUNICORN_MAX_REQUESTS` > 0.",
    SERVER,
)
WORKER_MAX_MEMORY_MIB = declare(
    "WORKER_MAX_MEMORY_MIB",
    "0",
    worker_memory,
    "Resident memory (RSS, in MiB) past which a worker is replaced as "
    "`GUNICORN_MAX_REQUESTS` replaces it: it stops accepting, finishes its requests and "
    "exits, and a fresh one starts. Checked once a second. Keep workers × this under the "
    "container's memory limit with room for the master and a fresh worker: the reference "
    "Deployment (1 GiB, 2 workers) sets 384. 0 means never.",
    SERVER,
)
GUNICORN_THREADS = declare(
    "GUNICORN_THREADS",
    "5",
    integer(1, 1000),
    "Threads per worker for synchronous views: each request for one runs in a single visit "
    "to one of them; `async def` views and the probes need none. Keep it at most "
    "`DB_POOL_MAX_SIZE`, or requests that need the database wait for a connection.",
    SERVER,
)
GUNICORN_WORKER_CONNECTIONS = declare(
    "GUNICORN_WORKER_CONNECTIONS",
    "1000",
    integer(1, 100_000),
    "Requests a worker holds at once (waiting for a thread or in flight), and connections it "
    "keeps. Past it, a request is answered 503 with `Retry-After` at once (the probes never) "
    "and idle keep-alive connections are closed. Gunicorn's setting and default.",
    SERVER,
)
REQUEST_HEAD_TIMEOUT = declare(
    "REQUEST_HEAD_TIMEOUT",
    "10",
    seconds(1, 300),
    "Seconds a client has to send a whole request head, from the connection's start or the "
    "head's first byte: else 408 and the connection closed (a connection that sent nothing is "
    "just closed). Idle time between requests is `GUNICORN_KEEPALIVE`'s.",
    SERVER,
)
RESPONSE_SEND_TIMEOUT = declare(
    "RESPONSE_SEND_TIMEOUT",
    "10",
    seconds(1, 3600),
    "Seconds a client may take none of a response before it is disconnected (logged, counted "
    "as 499), as nginx's `send_timeout`: a client that stops reading holds no thread and no "
    "memory past it.",
    SERVER,
)
GUNICORN_LIMIT_REQUEST_LINE = declare(
    "GUNICORN_LIMIT_REQUEST_LINE",
    "4094",
    integer(64, 8190, "bytes"),
    "Longest request line (method, URL, version) accepted; longer is answered 414 and the "
    "connection closed before the application sees it. Gunicorn's setting and default.",
    SERVER,
)
GUNICORN_LIMIT_REQUEST_FIELDS = declare(
    "GUNICORN_LIMIT_REQUEST_FIELDS",
    "100",
    integer(1, 32768),
    "Most header fields a request may have; more is answered 431. Gunicorn's setting and default.",
    SERVER,
)
GUNICORN_LIMIT_REQUEST_FIELD_SIZE = declare(
    "GUNICORN_LIMIT_REQUEST_FIELD_SIZE",
    "8190",
    integer(64, 65536, "bytes"),
    "Largest header field (name and value) accepted; larger is answered 431. Gunicorn's "
    "setting and default.",
    SERVER,
)
REQUEST_MAX_BODY_SIZE = declare(
    "REQUEST_MAX_BODY_SIZE",
    "1048576",
    integer(1024, 1073741824, "bytes"),
    "Largest request body accepted (1 MiB, as ingress-nginx's default): a larger "
    "`Content-Length` is answered 413 before the body is read, a chunked body as soon as "
    "it passes the limit. Raise it for uploads (e.g. `10485760` for 10 MiB), and the "
    "ingress's limit with it.",
    SERVER,
)
GUNICORN_HOST = declare(
    "GUNICORN_HOST",
    "0.0.0.0",
    bind_host,
    "Address Gunicorn binds to (`::` for IPv6 and IPv4).",
    SERVER,
)
GUNICORN_GRACEFUL_TIMEOUT = declare(
    "GUNICORN_GRACEFUL_TIMEOUT",
    "30",
    integer(1, 3600, "seconds"),
    "Seconds in-flight requests get to finish after a graceful stop (SIGTERM, SIGHUP, worker "
    "recycling) before they are cancelled; workers still alive then are killed.",
    SERVER,
)
GUNICORN_SHUTDOWN_DELAY = declare(
    "GUNICORN_SHUTDOWN_DELAY",
    "5",
    seconds(0, 300),
    "After SIGTERM, seconds to keep accepting and serving (with `/health` answering 503) "
    "while Kubernetes removes the pod from its endpoints; then the graceful stop begins.",
    SERVER,
)
GUNICORN_KEEPALIVE = declare(
    "GUNICORN_KEEPALIVE",
    "75",
    integer(0, 3600, "seconds"),
    "Seconds an idle keep-alive connection stays open. Longer than the idle timeout of "
    "load balancers in front (60 s for AWS ALB and ingress-nginx) so they never reuse a "
    "connection the server has just closed; 0 disables keep-alive.",
    SERVER,
)
GUNICORN_PRELOAD = declare(
    "GUNICORN_PRELOAD",
    "true",
    boolean,
    "Load Django once in the master and fork workers from it: a worker (re)starts in about "
    "25 ms instead of about 0.8 s (cheap `GUNICORN_MAX_REQUESTS` recycling) and shares memory "
    "copy-on-write. SIGHUP then reloads the configuration, not the code; in Kubernetes new "
    "code is a new pod.",
    SERVER,
)
GUNICORN_LOG_LEVEL = declare(
    "GUNICORN_LOG_LEVEL",
    "info",
    choice(*LOG_LEVELS),
    "Level of Gunicorn's and Uvicorn's own log.",
    SERVER,
)
GUNICORN_ACCESS_LOG = declare(
    "GUNICORN_ACCESS_LOG", "true", boolean, "Write one access-log line per request.", SERVER
)
GUNICORN_FORWARDED_ALLOW_IPS = declare(
    "GUNICORN_FORWARDED_ALLOW_IPS",
    "127.0.0.1,::1",
    forwarded_ips,
    "Proxies trusted to set `X-Forwarded-For`/`-Proto` (the client address and https "
    "scheme Django sees). Set it to your ingress's pod network, e.g. `10.0.0.0/8`.",
    SERVER,
)
GUNICORN_CONTROL_SOCKET = declare(
    "GUNICORN_CONTROL_SOCKET",
    "",
    absolute_path_or_empty,
    "Path of Gunicorn's control socket for `gunicornc` (put it on a tmpfs such as "
    "`/dev/shm/gunicorn.ctl`); empty turns it off.",
    SERVER,
)
GUNICORN_CMD_ARGS = declare(
    "GUNICORN_CMD_ARGS",
    "",
    gunicorn_args,
    "Gunicorn's own options, which Gunicorn reads over the variables above (e.g. "
    "`--timeout 60`). Read with Gunicorn's parser and checked with the rest: an option for "
    "a setting one of these variables sets must be a value that variable allows "
    "(`--timeout 0` is refused), and `--bind` must leave the metrics port to the metrics.",
    SERVER,
)

WEBSOCKET_MAX_MESSAGE_SIZE = declare(
    "WEBSOCKET_MAX_MESSAGE_SIZE",
    "1048576",
    integer(1024, 67108864, "bytes"),
    "Largest message a client may send (1 MiB, as `REQUEST_MAX_BODY_SIZE`); a larger one "
    "closes its socket with 1009 (message too big) before it is buffered whole. Uvicorn's "
    "own default is 16 MiB.",
    WEBSOCKETS,
)
WEBSOCKET_PING_INTERVAL = declare(
    "WEBSOCKET_PING_INTERVAL",
    "20",
    seconds(0, 3600),
    "Seconds between pings to each client: an idle socket stays open through load balancers "
    "that close silent connections (ingress-nginx after 60 s), and a vanished client is "
    "found. 0 sends none.",
    WEBSOCKETS,
)
WEBSOCKET_PING_TIMEOUT = declare(
    "WEBSOCKET_PING_TIMEOUT",
    "20",
    seconds(1, 3600),
    "Seconds a client has to answer a ping; one that does not is closed (1011). Needs "
    "`WEBSOCKET_PING_INTERVAL` > 0.",
    WEBSOCKETS,
)
WEBSOCKET_MAX_CONNECTIONS = declare(
    "WEBSOCKET_MAX_CONNECTIONS",
    "1000",
    integer(1, 1_000_000),
    "Open sockets (and handshakes) per worker; a handshake beyond it is answered 503, so "
    "the client retries, possibly on another pod. Idle sockets cost memory, not CPU: size "
    "it from the pod's memory limit (`make bench` measures a socket's share).",
    WEBSOCKETS,
)
WEBSOCKET_ALLOWED_ORIGINS = declare(
    "WEBSOCKET_ALLOWED_ORIGINS",
    "",
    comma_list(),
    "Origins allowed to open a socket (`https://example.com`, `.example.com` for every "
    "subdomain), checked by Channels' `OriginValidator`. Empty: Django's `ALLOWED_HOSTS`, "
    "as Channels' `AllowedHostsOriginValidator`. A handshake without an `Origin` header "
    "(not from a browser) is refused unless the list has `*`, which allows any origin.",
    WEBSOCKETS,
)

CACHE_URL = declare(
    "CACHE_URL",
    "",
    cache_url,
    "Cache server, e.g. `redis://redis:6379/0`; empty uses a per-process memory cache.",
    DATABASE,
)

DATABASE_URL = declare(
    "DATABASE_URL",
    "sqlite:///db.sqlite3",
    text(),
    "Database URL, e.g. `postgres://user:password@host:5432/name`. The default is a "
    "SQLite file beside the code, for the quickstart only.",
    DATABASE,
)
DB_SSLMODE = declare(
    "DB_SSLMODE",
    "",
    choice("", *SSL_MODES),
    "PostgreSQL `sslmode`; overrides the URL's. Empty keeps the URL's (libpq's default "
    "is `prefer`).",
    DATABASE,
)
DB_SSLROOTCERT = declare(
    "DB_SSLROOTCERT",
    "",
    text(empty_ok=True),
    "CA certificate file that signed the server's certificate, or `system` for the "
    "operating system's CAs. Needed by `verify-ca`/`verify-full`.",
    DATABASE,
)
DB_SSLCERT = declare(
    "DB_SSLCERT",
    "",
    text(empty_ok=True),
    "Client certificate file, for certificate authentication.",
    DATABASE,
)
DB_SSLKEY = declare(
    "DB_SSLKEY",
    "",
    text(empty_ok=True),
    "Client private key file (mode 0600, or 0640 if owned by root).",
    DATABASE,
)
DB_CONNECT_TIMEOUT = declare(
    "DB_CONNECT_TIMEOUT",
    "5",
    integer(1, 300, "seconds"),
    "Seconds to wait for a new PostgreSQL connection.",
    DATABASE,
)
DB_REQUEST_TIMEOUTS = declare(
    "DB_REQUEST_TIMEOUTS",
    "true",
    boolean,
    "In the server (not in `manage.py` commands), bound each PostgreSQL session by the request "
    "timeout: `statement_timeout` and `idle_in_transaction_session_timeout` of "
    "`GUNICORN_TIMEOUT`, sent as libpq `options`. Set it false behind a pooler that refuses "
    "the `options` startup parameter (PgBouncer without `ignore_startup_parameters = options`).",
    DATABASE,
)
DB_POOL = declare(
    "DB_POOL",
    "true",
    boolean,
    "Use psycopg's connection pool for PostgreSQL (`CONN_MAX_AGE` is 0 with it).",
    DATABASE,
)
DB_POOL_MIN_SIZE = declare(
    "DB_POOL_MIN_SIZE",
    "1",
    integer(0, 1000),
    "Connections each worker's pool keeps open.",
    DATABASE,
)
DB_POOL_MAX_SIZE = declare(
    "DB_POOL_MAX_SIZE",
    "5",
    integer(1, 1000),
    "Most connections each worker's pool opens. A deployment opens at most pods × workers × this.",
    DATABASE,
)
DB_POOL_TIMEOUT = declare(
    "DB_POOL_TIMEOUT",
    "10",
    seconds(0.1, 3600),
    "Seconds a request waits for a free pooled connection before it fails.",
    DATABASE,
)

HEALTH_CHECKS = declare(
    "HEALTH_CHECKS",
    "database",
    checks("database", "cache"),
    "Dependencies `/health` (readiness) checks: `database` (each configured database), "
    "`cache` (`CACHE_URL`'s server), and a project's own as `package.module:callable` (a "
    "function of no arguments, plain or `async def`, that raises or returns `False` when its "
    'dependency is down; README, "Health probes"). `/health/live` never checks any.',
    HEALTH,
)
HEALTH_CHECK_TIMEOUT = declare(
    "HEALTH_CHECK_TIMEOUT",
    "0.5",
    seconds(0.05, 30),
    "Seconds a readiness check may take before it counts as failed (keep it under the "
    "probe's `timeoutSeconds`).",
    HEALTH,
)
HEALTH_CACHE_SECONDS = declare(
    "HEALTH_CACHE_SECONDS",
    "1",
    seconds(0, 60),
    "Seconds a readiness result is reused, so a probe storm does not become a database "
    "storm; 0 checks every time.",
    HEALTH,
)

LOG_FORMAT = declare(
    "LOG_FORMAT",
    "json",
    choice("json", "text"),
    "`json` (one object per line, for collectors) or `text` (for people; `make run` uses it).",
    OPERATIONS,
)
LOG_LEVEL = declare(
    "LOG_LEVEL",
    "info",
    choice(*LOG_LEVELS),
    "Level of the application's (Django's) log.",
    OPERATIONS,
)
LOG_PROBES = declare(
    "LOG_PROBES",
    "false",
    boolean,
    "Access-log requests to `/health` and `/health/live` too.",
    OPERATIONS,
)
METRICS_PORT = declare(
    "METRICS_PORT",
    "9000",
    integer(0, 65535),
    "Port of the separate Prometheus `/metrics` listener; 0 turns metrics off. Never "
    "served on the public port.",
    OPERATIONS,
)
PROMETHEUS_MULTIPROC_DIR = declare(
    "PROMETHEUS_MULTIPROC_DIR",
    "",
    absolute_path_or_empty,
    "Directory (on a tmpfs) where workers share metrics, emptied at start. Empty: a fresh "
    "one under `/dev/shm` (or the temp dir), removed when the server exits. Refused when "
    "`METRICS_PORT` is 0 (metrics off).",
    OPERATIONS,
)

# The snapshot ------------------------------------------------------------------


class Snapshot(Mapping[str, Any]):
    """Every declared variable, parsed once: ``ENV.GUNICORN_TIMEOUT`` or
    ``ENV["GUNICORN_TIMEOUT"]``, and ``ENV.source(name)`` for where it came from.

    Frozen: nothing changes it after :func:`load`. A variable that did not parse
    has no value; reading it raises its ConfigError, so a consumer that runs before
    (or without) the start-up check still stops with the right line. Its text is
    one of :attr:`problems`.
    """

    __slots__ = ("_invalid", "_names", "_settings")

    def __init__(self, settings: Mapping[str, Setting], invalid: Mapping[str, str]) -> None:
        object.__setattr__(self, "_settings", MappingProxyType(dict(settings)))
        object.__setattr__(self, "_invalid", MappingProxyType(dict(invalid)))
        object.__setattr__(self, "_names", tuple(name for name in REGISTRY if name in self))

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
        return Snapshot, (dict(self._settings), dict(self._invalid))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def source(self, name: str) -> str:
        """Where the value came from: the variable, its fallback, or ``"default"``."""
        if name in self._invalid:
            raise ConfigError(self._invalid[name])
        return self._settings[name].source

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
    return Snapshot(settings, invalid)


_snapshots: dict[int, Snapshot] = {}


def snapshot() -> Snapshot:
    """This process's configuration, loaded on first use and then kept.

    Loaded lazily, not at import, so that a settings module may still fill in a
    default (tests/settings.py does) before anything reads the environment. A
    project's own variables are declared when its settings are imported, which may
    be after the runtime's first read (the Gunicorn config): the snapshot is then
    loaded again, once, with them. Workers forked from the Gunicorn master inherit
    the master's snapshot."""
    size = len(REGISTRY)
    if size not in _snapshots:
        _snapshots.clear()
        _snapshots[size] = load()
    return _snapshots[size]


# Documentation ---------------------------------------------------------------


def markdown_table(variables: Iterable[Variable] | None = None) -> str:
    """A README's variables table, generated from the declarations: the runtime's
    (its README) or every one declared (a project's README)."""
    lines: list[str] = []
    section = None
    for variable in REGISTRY.values() if variables is None else variables:
        if variable.section != section:
            section = variable.section
            if lines:
                lines.append("")
            lines += [
                f"**{section}**",
                "",
                "| Variable | Description | Default | Allowed |",
                "|---|---|---|---|",
            ]
        default = "*(required)*" if variable.default is None else f"`{variable.default}`"
        if variable.default == "":
            default = "*(empty)*"
        lines.append(
            f"| `{variable.name}` | {variable.help} | {default} | {variable.parser.allowed} |"
        )
    return "\n".join(lines) + "\n"


RUNTIME_VARIABLES: tuple[Variable, ...] = tuple(REGISTRY.values())  # all declared above
