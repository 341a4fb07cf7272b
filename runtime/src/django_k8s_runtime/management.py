"""Running a management command (``manage.py migrate``, ``createsuperuser``...).

Two differences from the server, both for the migration Job an operator runs
before every rollout:

* **No connection pool.** A command needs one connection, now. Through the pool,
  a database that cannot be reached meant ten seconds of retries and then
  ``couldn't get a connection after 10.00 sec``, the real cause only in warnings
  above it. Without it, libpq answers within ``DB_CONNECT_TIMEOUT``.
* **One line for a database that cannot be reached**, naming the database (never
  the password) and the cause as libpq gives it, and a non-zero exit: no
  traceback for an operator's mistake or an outage. An error once connected
  (a failing migration) keeps Django's full report.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = ["execute_from_command_line"]

CAUSES = (
    ("connection refused", "refused"),
    ("certificate verify failed", "TLS verification failed"),
    ("ssl", "TLS failed"),
    ("password authentication failed", "authentication failed"),
    ("no pg_hba.conf entry", "not allowed by the server's pg_hba.conf"),
    ("database", "unknown database"),  # FATAL: database "x" does not exist
    ("role", "unknown user"),  # FATAL: role "x" does not exist
    ("timeout expired", "no answer within DB_CONNECT_TIMEOUT"),
    ("could not translate host name", "unknown host"),
    ("name or service not known", "unknown host"),
    ("unable to open database file", "cannot open the SQLite file"),
)


def execute_from_command_line(argv: list[str] | None = None) -> None:
    """Django's ``execute_from_command_line``, as a project's ``manage.py`` calls it."""
    from django.conf import settings
    from django.core import management
    from django.db import OperationalError

    from django_k8s_runtime.settings import checked

    databases = settings.DATABASES  # imports the project's settings (its own variables)
    checked()  # every variable, as the server checks them, before Django's own errors
    for database in databases.values():
        database.get("OPTIONS", {}).pop("pool", None)
    try:
        management.execute_from_command_line(argv if argv is not None else sys.argv)
    except OperationalError as error:
        if not _while_connecting(error.__traceback__):
            raise
        sys.exit(f"database error: {describe(error, settings.DATABASES)}")


def describe(error: BaseException, databases: dict[str, Any]) -> str:
    """One line: which database, why, and libpq's own words (no password in them)."""
    database = databases.get("default", {})
    if database.get("ENGINE", "").endswith("sqlite3"):
        where = f"SQLite {database.get('NAME')}"
    else:
        where = (
            f"PostgreSQL at {database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}"
            f"/{database.get('NAME')} as {database.get('USER') or '-'}"
        )
    detail = " ".join(str(error).split())
    cause = next((why for text, why in CAUSES if text in detail.lower()), "failed")
    return f"cannot connect to {where}: {cause} ({detail})"


def _while_connecting(traceback: TracebackType | None) -> bool:
    """Whether the error came from Django opening the connection (``ensure_connection``)."""
    while traceback is not None:
        if traceback.tb_frame.f_code.co_name == "ensure_connection":
            return True
        traceback = traceback.tb_next
    return False
