"""Django's DATABASES, from DATABASE_URL and the DB_* variables.

The URL is parsed by dj-database-url; the explicit ``DB_SSL*`` variables then
override its query string. We never use the parser's ``ssl_require`` helper: it
writes ``sslmode=require`` over whatever the URL said, silently downgrading a
``verify-full`` to an unauthenticated connection.

Everything libpq would only complain about on the first request (a missing CA
file, a key file it refuses to read, an unknown ``sslmode``) is checked here, at
start-up, and reported as one line naming the variable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dj_database_url

from config import env
from config.env import ConfigError

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_MODES = ("verify-ca", "verify-full")
POSTGRES_ENGINE = "django.db.backends.postgresql"


def databases(base_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"default": default_database(base_dir, environ)}


def default_database(base_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    url = env.DATABASE_URL.value(environ)
    try:
        config = dj_database_url.parse(url)
    except Exception:  # the parser raises several types for malformed URLs
        raise ConfigError(
            f"DATABASE_URL={_redact(url)!r} is not valid: expected a URL such as "
            "postgres://user:password@host:5432/name or sqlite:///path/to/file."
        ) from None

    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = config.get("NAME") or ""
        if name and name != ":memory:" and not os.path.isabs(name):
            config["NAME"] = str(base_dir / name)
        _refuse_postgres_only_variables(environ)
        return config
    if engine != POSTGRES_ENGINE:
        raise ConfigError(
            f"DATABASE_URL={_redact(url)!r} is not valid: this service supports "
            "postgres:// (and sqlite:// for local use)."
        )
    if not config.get("NAME"):
        raise ConfigError(
            f"DATABASE_URL={_redact(url)!r} is not valid: it names no database "
            "(postgres://user:password@host:5432/NAME)."
        )

    options = config.setdefault("OPTIONS", {})
    options.update(_tls_options(options, environ))
    options.setdefault("connect_timeout", env.DB_CONNECT_TIMEOUT.value(environ))
    if env.DB_POOL.value(environ):
        options["pool"] = {
            "min_size": env.DB_POOL_MIN_SIZE.value(environ),
            "max_size": env.DB_POOL_MAX_SIZE.value(environ),
            "timeout": env.DB_POOL_TIMEOUT.value(environ),
        }
    # Under ASGI, Django's persistent connections are the wrong tool (each request
    # runs in its own thread); the pool keeps connections instead.
    config["CONN_MAX_AGE"] = 0
    config["CONN_HEALTH_CHECKS"] = True
    return config


def _tls_options(options: dict[str, Any], environ: Mapping[str, str] | None) -> dict[str, Any]:
    """The URL's ssl* parameters with the DB_SSL* variables laid over them, checked."""
    result: dict[str, Any] = {}
    sslmode = env.DB_SSLMODE.value(environ) or options.get("sslmode") or ""
    source = "DB_SSLMODE" if env.DB_SSLMODE.value(environ) else "DATABASE_URL's sslmode"
    if sslmode:
        if sslmode not in SSL_MODES:
            raise ConfigError(
                f"{source}={sslmode!r} is not valid: expected one of {', '.join(SSL_MODES)}."
            )
        result["sslmode"] = sslmode

    for variable, key in (
        (env.DB_SSLROOTCERT, "sslrootcert"),
        (env.DB_SSLCERT, "sslcert"),
        (env.DB_SSLKEY, "sslkey"),
    ):
        value = variable.value(environ) or options.get(key) or ""
        name = variable.name if variable.value(environ) else f"DATABASE_URL's {key}"
        if not value:
            continue
        if key == "sslrootcert" and value == "system":
            _require_libpq_for_system_roots(name)
        else:
            _require_readable_file(name, value)
        if key == "sslkey":
            _require_private_key_permissions(name, value)
        result[key] = value

    if sslmode in VERIFYING_MODES and "sslrootcert" not in result:
        default_root = Path.home() / ".postgresql" / "root.crt"
        if not default_root.is_file():
            raise ConfigError(
                f"{source}={sslmode} needs the certificate authority: set DB_SSLROOTCERT to "
                "the CA file that signed the server's certificate (or 'system')."
            )
    if sslmode == "disable" and result.keys() & {"sslrootcert", "sslcert", "sslkey"}:
        raise ConfigError(
            "DB_SSLMODE=disable contradicts the certificate settings given "
            "(DB_SSLROOTCERT/DB_SSLCERT/DB_SSLKEY); remove one or the other."
        )
    if ("sslcert" in result) != ("sslkey" in result):
        raise ConfigError("DB_SSLCERT and DB_SSLKEY go together: set both or neither.")
    return result


def _require_readable_file(name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"{name}={path!r} is not valid: no such file.")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={path!r} is not valid: the file is not readable by this user.")


def _require_private_key_permissions(name: str, path: str) -> None:
    """libpq refuses a key that others can read; say so now, not on the first request."""
    info = os.stat(path)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == 0 and os.geteuid() != 0:
        allowed_mask, allowed = 0o137, "0640 or stricter (root-owned)"
    else:
        allowed_mask, allowed = 0o077, "0600 or stricter"
    if mode & allowed_mask:
        raise ConfigError(
            f"{name}={path!r} is not valid: its permissions are {mode:04o} and libpq "
            f"refuses a private key others can read; expected {allowed}."
        )


def _require_libpq_for_system_roots(name: str) -> None:
    import psycopg

    if psycopg.pq.version() < 160000:
        raise ConfigError(
            f"{name}='system' is not valid: it needs libpq 16 or newer, this one is "
            f"{psycopg.pq.version()}; give a CA file instead."
        )


def _refuse_postgres_only_variables(environ: Mapping[str, str] | None) -> None:
    for variable in (env.DB_SSLMODE, env.DB_SSLROOTCERT, env.DB_SSLCERT, env.DB_SSLKEY):
        if variable.value(environ):
            raise ConfigError(
                f"{variable.name} is set but DATABASE_URL is not a PostgreSQL URL; "
                "TLS settings apply to postgres:// only."
            )


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
