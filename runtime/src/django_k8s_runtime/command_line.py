"""``GUNICORN_CMD_ARGS`` held to the rules of the variables it overrides.

A value there can undo what the environment's variables set (``--timeout 0`` turns
the request timeout off, ``--bind`` replaces the listeners), so it is checked with
everything else at start-up and in ``check-env`` (:func:`cmd_args_problems`: a
value the matching variable would refuse is refused here too), and the warnings are
judged on the values Gunicorn will use (:func:`gunicorn_value`). It is read with
Gunicorn's own parser (:mod:`.gunicorn_args`).
"""

from __future__ import annotations

from typing import Any

from django_k8s_runtime.env import REGISTRY, ConfigError, Snapshot
from django_k8s_runtime.gunicorn_args import flag

# The Gunicorn settings the runtime's variables set (gunicorn.py), by Gunicorn's
# name: GUNICORN_CMD_ARGS may set them again, and is held to the same rules.
GUNICORN_SETTINGS = {
    "workers": "GUNICORN_WORKERS",
    "timeout": "GUNICORN_TIMEOUT",
    "graceful_timeout": "GUNICORN_GRACEFUL_TIMEOUT",
    "keepalive": "GUNICORN_KEEPALIVE",
    "max_requests": "GUNICORN_MAX_REQUESTS",
    "max_requests_jitter": "GUNICORN_MAX_REQUESTS_JITTER",
    "threads": "GUNICORN_THREADS",
    "worker_connections": "GUNICORN_WORKER_CONNECTIONS",
    "limit_request_line": "GUNICORN_LIMIT_REQUEST_LINE",
    "limit_request_fields": "GUNICORN_LIMIT_REQUEST_FIELDS",
    "limit_request_field_size": "GUNICORN_LIMIT_REQUEST_FIELD_SIZE",
    "preload_app": "GUNICORN_PRELOAD",
    "loglevel": "GUNICORN_LOG_LEVEL",
    "forwarded_allow_ips": "GUNICORN_FORWARDED_ALLOW_IPS",
    "control_socket": "GUNICORN_CONTROL_SOCKET",
}


_SETTING_OF = {name: setting for setting, name in GUNICORN_SETTINGS.items()}

# The worker class the Gunicorn config sets (gunicorn.py); GUNICORN_CMD_ARGS may not
# replace it.
WORKER_CLASS = "django_k8s_runtime.server.worker.UvicornWorker"


def gunicorn_value(snapshot: Snapshot, name: str) -> Any:
    """A variable's value as Gunicorn will use it: GUNICORN_CMD_ARGS's, parsed as the
    variable's, where it sets one; ConfigError if that is not valid."""
    setting = _SETTING_OF.get(name)
    overrides = snapshot.GUNICORN_CMD_ARGS
    if setting is None or setting not in overrides:
        return snapshot[name]
    try:
        return REGISTRY[name].parser.parse(as_text(overrides[setting]))
    except (ValueError, TypeError):
        raise ConfigError(_override_problem(setting, overrides[setting])) from None


def named(snapshot: Snapshot, name: str, value: Any) -> str:
    """``NAME=value`` for a message, saying so where GUNICORN_CMD_ARGS set the value."""
    setting = _SETTING_OF.get(name)
    if setting is not None and setting in snapshot.GUNICORN_CMD_ARGS:
        return f"{name}={value} (GUNICORN_CMD_ARGS's {flag(setting)})"
    return f"{name}={value}"


def as_text(value: Any) -> str:
    """A Gunicorn setting's value as the text of the variable it overrides."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _override_problem(setting: str, value: Any) -> str:
    name = GUNICORN_SETTINGS[setting]
    return (
        f"GUNICORN_CMD_ARGS sets {flag(setting)} {as_text(value)}, which "
        f"{name} would refuse: expected {REGISTRY[name].parser.allowed}."
    )


def cmd_args_problems(snapshot: Snapshot) -> list[str]:
    """GUNICORN_CMD_ARGS, as Gunicorn will apply it, held to the variables' rules (a
    start-up rule, run by :mod:`.validation`)."""
    overrides = snapshot.GUNICORN_CMD_ARGS
    found = []
    for setting in overrides:
        if setting in GUNICORN_SETTINGS:
            try:
                gunicorn_value(snapshot, GUNICORN_SETTINGS[setting])
            except ConfigError as error:
                found.append(error.message)
    if "bind" in overrides and snapshot.METRICS_PORT:
        found += _bind_problems(overrides["bind"], snapshot.METRICS_PORT)
    worker_class = overrides.get("worker_class", WORKER_CLASS)
    if worker_class != WORKER_CLASS:
        found.append(
            f"GUNICORN_CMD_ARGS sets {flag('worker_class')} {worker_class}: the runtime serves "
            f"only with its own worker, {WORKER_CLASS}, which holds the request path, its "
            "bounds and its shutdown (under sync every request is answered 500; under "
            "another ASGI worker none of the bounds holds); remove it."
        )
    if overrides.get("reuse_port"):
        found.append(
            f"GUNICORN_CMD_ARGS sets {flag('reuse_port')}: each worker then listens on a "
            "socket of its own with its own queue of connections (Gunicorn 24 and later), "
            "so the connections waiting on a worker that is recycled or stops are reset, and "
            "wait behind a busy worker while another is idle; remove it (the workers share "
            "the master's socket)."
        )
    return found


def _bind_problems(binds: tuple[str, ...], metrics_port: int) -> list[str]:
    """``--bind`` replaces every listener the config module sets, the metrics one too."""
    from gunicorn.util import parse_address

    ports = []
    for bind in binds:
        try:
            address = parse_address(bind)
        except RuntimeError as error:
            return [f"GUNICORN_CMD_ARGS binds {bind!r}, which Gunicorn refuses: {error}"]
        ports.append(address[1] if isinstance(address, tuple) else None)
    shown = " ".join(f"--bind {bind}" for bind in binds)
    if metrics_port not in ports:
        return [
            f"GUNICORN_CMD_ARGS's {shown} replaces every listener, the metrics port's too: "
            f"METRICS_PORT={metrics_port} would serve nothing; bind it as well "
            f"(--bind <host>:{metrics_port}), or set METRICS_PORT=0."
        ]
    if all(port == metrics_port for port in ports):
        return [
            f"GUNICORN_CMD_ARGS's {shown} leaves only the metrics port (METRICS_PORT="
            f"{metrics_port}), which answers nothing but /metrics: the application would "
            "not be served; bind the application's port too."
        ]
    return []
