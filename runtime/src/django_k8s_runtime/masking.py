"""One rule for secrets in whatever the runtime shows (an error line, ``check-env``,
Django's error page): a value under a name that names a secret is hidden whole, and
a URL never shows a password.

A name names a secret when it says so: ``pass``, ``pwd``, ``secret``, ``token``,
``credential`` or ``api_key`` anywhere in it, or ``auth`` at its start, or ``key``
alone, in any case. The same rule serves a variable's name (``DJANGO_SECRET_KEY``,
``REDIS_PASSWORD``) and a URL's query parameter (``?password=``, ``?sslpassword=``,
``?token=``); ``DB_SSLKEY`` names a file, not a secret.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "<hidden>"  # a whole value
MASK = "***"  # a password or a secret parameter inside a URL
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|credential|api_?key|^auth|^key$", re.I)


def names_a_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def shown(name: str, text: str) -> str:
    """``text`` as it may be shown under ``name``."""
    return HIDDEN if names_a_secret(name) else redact_url(text)


def redact_url(text: str) -> str:
    """``text`` with the secrets of a URL in it starred: the userinfo's password
    (``postgres://app:***@db/app``) and the value of every query parameter that
    names a secret (``?password=***&sslpassword=***``)."""
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
    if equals and names_a_secret(unquote(name)):
        return f"{name}={MASK}"
    return part
