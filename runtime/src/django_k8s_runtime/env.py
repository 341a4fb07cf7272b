"""Every environment variable the runtime reads, declared once; and what a project
uses to declare its own the same way (:func:`declare`, the parsers) and to read
them (:func:`snapshot`).

The declarations are the single source of truth, in the manner of Gunicorn's own
``config.py``: each variable has a name, a default, a parser that validates it, and
help text. The settings helpers, the Gunicorn config module and the variables
reference (``make docs``) are derived from them, so they cannot drift.

The environment is read and parsed once per process, into a frozen
:class:`Snapshot` (:func:`load`, or :func:`snapshot` for this process's own):
Gunicorn parses its settings once into ``cfg`` too, and consumers then read
``snapshot.GUNICORN_TIMEOUT`` instead of parsing the text again at every use.

Bad input never falls back to a default: a value that does not parse is a
problem of the snapshot, one line naming the variable, the value and what is
allowed, and reading it raises :class:`ConfigError`. :mod:`.validation`
gathers these and every rule between values and reports them all at once.
``ConfigError`` is a ``SystemExit`` so that every entry point (``gunicorn``,
``manage.py``, a worker) prints those lines and exits non-zero without a
traceback.

The machinery is in :mod:`.registry` and :mod:`.parsers`; secrets are shown by
:mod:`.masking`'s one rule.
"""

from __future__ import annotations

import re

from django_k8s_runtime import gunicorn_args as gunicorn_command_line
from django_k8s_runtime.masking import redact_url
from django_k8s_runtime.parsers import (
    Parser,
    Reason,
    absolute_path_or_empty,
    bind_host,
    boolean,
    cache_url,
    checks,
    choice,
    comma_list,
    forwarded_ips,
    host_list,
    http_url_or_empty,
    integer,
    seconds,
    secret_key,
    subset,
    text,
    worker_memory,
    workers,
)
from django_k8s_runtime.registry import (
    DEFAULT,
    REGISTRY,
    RESERVED_PREFIXES,
    ConfigError,
    Snapshot,
    Variable,
    declare,
    load,
    snapshot,
)

__all__ = [
    "DEFAULT",
    "REGISTRY",
    "ConfigError",
    "Parser",
    "Reason",
    "Snapshot",
    "Variable",
    "absolute_path_or_empty",
    "boolean",
    "cache_url",
    "choice",
    "comma_list",
    "declare",
    "forwarded_ips",
    "host_list",
    "http_url_or_empty",
    "integer",
    "load",
    "redact_url",
    "seconds",
    "secret_key",
    "snapshot",
    "subset",
    "text",
]


def _parse_probe_path(value: str) -> str:
    path = value.strip()
    if not _PROBE_PATH.fullmatch(path) or {".", ".."} & set(path.split("/")):
        raise ValueError
    return path


_PROBE_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+")
probe_path = Parser(
    _parse_probe_path,
    "a URL path such as /health: '/' and segments of letters, digits and -._~, no trailing "
    "slash, no query",
)

# The choices more than one variable (or rule) offers, written once.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


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
    "Seconds a client may take none of a response before it is disconnected (logged, and "
    "recorded with the status sent and `ended: send_timeout`), as nginx's `send_timeout`: a "
    "client that stops reading holds no thread and no memory past it. A WebSocket whose "
    "client takes nothing of what is written to it for as long is reset (its application "
    "gets its disconnect, 1006).",
    SERVER,
)
REQUEST_BODY_MIN_RATE = declare(
    "REQUEST_BODY_MIN_RATE",
    "240",
    integer(0, 1024**3, "bytes per second"),
    "Slowest a request body may arrive, on average, once `REQUEST_BODY_GRACE` has passed "
    "(Kestrel's `MinRequestBodyDataRate`): slower is answered 408, the client's fault, and the "
    "connection closed; 0 for no minimum. A body on its way holds no request slot, and "
    "`GUNICORN_TIMEOUT` counts from when it is in.",
    SERVER,
)
REQUEST_BODY_GRACE = declare(
    "REQUEST_BODY_GRACE",
    "5",
    seconds(1, 300),
    "Seconds a request body may take before `REQUEST_BODY_MIN_RATE` applies to it.",
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
    "33554432",
    integer(1024, 1073741824, "bytes"),
    "Largest request body accepted (32 MiB: over Django's and Wagtail's own limits, so "
    "theirs answer first). A larger `Content-Length` is answered 413, naming this variable, "
    "before the body reaches Django; a chunked body as soon as it passes the limit. Set the "
    "ingress's limit the same (ingress-nginx's `proxy-body-size` is 1m by default) and give "
    "`/tmp` room for two copies of each body handled at once (the documentation's Serving "
    "page).",
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


gunicorn_args = Parser(
    gunicorn_command_line.settings,
    "Gunicorn's own command-line options (`gunicorn --help`), or empty",
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
    "Largest message a client may send (1 MiB); a larger one "
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
    "`GUNICORN_TIMEOUT`, sent as libpq `options`. PgBouncer refuses them (and its "
    "`ignore_startup_parameters = options` drops them unsaid): with `DB_POOLER=pgbouncer` set "
    "it false and give the bounds to PgBouncer (`connect_query`: the documentation's "
    "Database page).",
    DATABASE,
)
DB_POOLER = declare(
    "DB_POOLER",
    "none",
    choice("none", "pgbouncer"),
    "What the server's PostgreSQL connections go through. `pgbouncer`: PgBouncer in "
    "transaction mode, where a session is lent for one transaction at a time: Django's "
    "server-side cursors are turned off (`DISABLE_SERVER_SIDE_CURSORS`), and "
    "`DB_REQUEST_TIMEOUTS` must be false (the bounds go in PgBouncer's `connect_query`). "
    "Migrations need a session of their own: run them against PostgreSQL itself or a "
    "session-mode pool (the documentation's Database page).",
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

HEALTH_PATH = declare(
    "HEALTH_PATH",
    "/health",
    probe_path,
    "Path of the readiness probe, answered before Django (and so before any page of the "
    "project's at that path): move it when a project URL needs the path, and the "
    "Deployment's `readinessProbe` with it.",
    HEALTH,
)
HEALTH_LIVE_PATH = declare(
    "HEALTH_LIVE_PATH",
    "/health/live",
    probe_path,
    "Path of the liveness (and startup) probe, answered before Django; move it with "
    "`HEALTH_PATH`, and the Deployment's `livenessProbe` and `startupProbe` with it.",
    HEALTH,
)
HEALTH_CHECKS = declare(
    "HEALTH_CHECKS",
    "database",
    checks("database", "cache", "channel_layer"),
    "Dependencies `/health` (readiness) checks: `database` (each configured database), "
    "`cache` (`CACHE_URL`'s server), `channel_layer` (each of Channels' `CHANNEL_LAYERS`), "
    "and a project's own as `package.module:callable` (a "
    "function of no arguments, plain or `async def`, that raises or returns `False` when its "
    "dependency is down; the documentation's Health probes page). The liveness probe "
    "never checks any.",
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
    "Access-log requests to the probes (`HEALTH_PATH`, `HEALTH_LIVE_PATH`) too.",
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


# Traces: OpenTelemetry's own variables, with the meaning its specification gives them
# (the runtime hands their values to the SDK; an OTEL_* variable not declared here is
# refused, see tracing.py). Tracing is on exactly when an OTLP endpoint is set.
TRACING = "Traces (OpenTelemetry; the `otel` extra)"
RESERVED_PREFIXES.add("OTEL_")


def _parse_resource_attributes(value: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key=value``, each value percent-decoded, as the OpenTelemetry SDK
    reads it; an item without ``=`` or a key is a mistake (the SDK skips it)."""
    from urllib.parse import unquote

    pairs = []
    for item in (item.strip() for item in value.split(",")):
        if not item:
            continue
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise ValueError
        pairs.append((key.strip(), unquote(raw.strip())))
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError
    return tuple(pairs)


resource_attributes = Parser(
    _parse_resource_attributes,
    "comma-separated key=value pairs, each key once, values percent-encoded "
    "(k8s.pod.name=web-1,deployment.environment.name=production), or empty",
)


def _parse_ratio_or_empty(value: str) -> float | None:
    stripped = value.strip()
    if not stripped:
        return None
    ratio = float(stripped)  # ValueError for junk
    if not 0 <= ratio <= 1:
        raise ValueError
    return ratio


ratio_or_empty = Parser(_parse_ratio_or_empty, "a number from 0 to 1, or empty")
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_traceidratio",
    "parentbased_always_off",
    "always_on",
    "traceidratio",
    "always_off",
)

OTEL_EXPORTER_OTLP_ENDPOINT = declare(
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "",
    http_url_or_empty,
    "Base URL of the OpenTelemetry collector's OTLP/HTTP receiver, e.g. "
    "`http://otel-collector:4318`; spans go to `/v1/traces` under it. Setting it (or the "
    "next) turns tracing on: a server span per request, named by its route, with a child "
    "span per PostgreSQL statement, exported from each worker (the documentation's Logs, "
    "metrics and traces page). "
    "Needs the `otel` extra. Empty: no tracing, and nothing of it is paid per request.",
    TRACING,
)
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = declare(
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "",
    http_url_or_empty,
    "Full URL spans are sent to, e.g. `http://otel-collector:4318/v1/traces`, used as it "
    "is; over `OTEL_EXPORTER_OTLP_ENDPOINT`.",
    TRACING,
)
OTEL_EXPORTER_OTLP_PROTOCOL = declare(
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "http/protobuf",
    choice("http/protobuf"),
    "OTLP over HTTP with protobuf, the collector's port 4318; gRPC (4317) is not offered: "
    "its client's threads do not survive Gunicorn's fork.",
    TRACING,
)
OTEL_EXPORTER_OTLP_COMPRESSION = declare(
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "none",
    choice("none", "gzip"),
    "Compression of the exported spans.",
    TRACING,
)
OTEL_EXPORTER_OTLP_TIMEOUT = declare(
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "10000",
    integer(100, 60000, "milliseconds"),
    "Most one export may take, retries included. A worker that stops sends what waits "
    "first (one export per 512 spans, 30 s at most in all), within "
    "`GUNICORN_GRACEFUL_TIMEOUT`: keep a collector near.",
    TRACING,
)
OTEL_SERVICE_NAME = declare(
    "OTEL_SERVICE_NAME",
    "",
    text(empty_ok=True),
    "The service's name on every span (`service.name`); with tracing on, it or a "
    "`service.name` in `OTEL_RESOURCE_ATTRIBUTES` is required.",
    TRACING,
)
OTEL_RESOURCE_ATTRIBUTES = declare(
    "OTEL_RESOURCE_ATTRIBUTES",
    "",
    resource_attributes,
    "What every span says of where it was made: `k8s.pod.name`, `k8s.namespace.name`, "
    "`k8s.node.name` from the Downward API, `deployment.environment.name`... "
    "(the documentation's Logs, metrics and traces page has the Deployment's lines).",
    TRACING,
)
OTEL_TRACES_SAMPLER = declare(
    "OTEL_TRACES_SAMPLER",
    "parentbased_always_on",
    choice(*SAMPLERS),
    "Which requests are traced. `parentbased_*` follow the sampled flag of an incoming "
    "`traceparent` and apply the rest to requests without one; `traceidratio`: a share of "
    "them (`OTEL_TRACES_SAMPLER_ARG`).",
    TRACING,
)
OTEL_TRACES_SAMPLER_ARG = declare(
    "OTEL_TRACES_SAMPLER_ARG",
    "",
    ratio_or_empty,
    "The share of requests `traceidratio` and `parentbased_traceidratio` trace, from 0 to "
    "1; empty is 1.0. Refused with a sampler that takes none.",
    TRACING,
)
OTEL_PROPAGATORS = declare(
    "OTEL_PROPAGATORS",
    "tracecontext,baggage",
    subset("tracecontext", "baggage", "none"),
    "How a trace's context is read from requests and written to the calls the application "
    "makes with instrumented clients: W3C `traceparent`/`tracestate` (`tracecontext`) and "
    "W3C `baggage`; `none` for neither.",
    TRACING,
)
OTEL_TRACES_EXPORTER = declare(
    "OTEL_TRACES_EXPORTER",
    "otlp",
    choice("otlp", "none"),
    "`none` turns tracing off while an endpoint is set.",
    TRACING,
)
OTEL_SDK_DISABLED = declare(
    "OTEL_SDK_DISABLED",
    "false",
    boolean,
    "`true` turns tracing off while an endpoint is set (OpenTelemetry's switch).",
    TRACING,
)
TRACE_PROBES = declare(
    "TRACE_PROBES",
    "false",
    boolean,
    "Trace the probes' requests (`HEALTH_PATH`, `HEALTH_LIVE_PATH`) too. `/metrics` is never "
    "traced.",
    TRACING,
)

RUNTIME_VARIABLES: tuple[Variable, ...] = tuple(REGISTRY.values())  # all declared above
