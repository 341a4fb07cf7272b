"""This project's own environment variables: Django's, and the example app's.

The runtime (django_k8s_runtime) declares the server's, the database's, the
probes' and the logs'; a project declares the rest the same way, with
``env.declare``, so every variable is still declared once and the variables
reference (docs/configuration.md) lists them all. Importing this module declares
them; config/settings.py reads them from the runtime's snapshot.
"""

from urllib.parse import urlsplit

from django_k8s_runtime import env, validation
from django_k8s_runtime.env import (
    Parser,
    boolean,
    cache_url,
    comma_list,
    declare,
    host_list,
    http_url_or_empty,
    integer,
    secret_key,
)

DJANGO = "Django"
EXAMPLE = "Example app"


def _parse_origins(value: str) -> tuple[str, ...]:
    # Django compares the request's origin, scheme included: an origin without one
    # never matches (Django's check 4_0.E001, which only `manage.py check` runs).
    origins = comma_list().parse(value)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError
    return origins


origin_list = Parser(
    _parse_origins,
    "a comma-separated list of origins with their scheme, such as https://shop.example.com "
    "or https://*.example.com (or empty)",
)

DJANGO_SECRET_KEY = declare(
    "DJANGO_SECRET_KEY",
    None,
    secret_key,
    "Django's secret key. Required unless `DJANGO_DEBUG` is on; `make run` generates a "
    "local one into the ignored file `.secret_key`.",
    DJANGO,
)
DJANGO_DEBUG = declare(
    "DJANGO_DEBUG", "false", boolean, "Django's debug mode. Never on in production.", DJANGO
)
DJANGO_ALLOWED_HOSTS = declare(
    "DJANGO_ALLOWED_HOSTS",
    "",
    host_list(),
    "Comma-separated host names the site answers to. The health probes answer any host.",
    DJANGO,
)
DJANGO_CSRF_TRUSTED_ORIGINS = declare(
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "",
    origin_list,
    "Comma-separated origins (`https://example.com`) trusted for unsafe requests.",
    DJANGO,
)
DJANGO_HTTPS = declare(
    "DJANGO_HTTPS",
    "true",
    boolean,
    "The site is served over HTTPS (usually TLS ends at the ingress): redirect http to "
    "https, secure cookies, HSTS. `make run` turns it off for plain http on localhost.",
    DJANGO,
)
DJANGO_HSTS_SECONDS = declare(
    "DJANGO_HSTS_SECONDS",
    "31536000",
    integer(0, 63072000, "seconds"),
    "`Strict-Transport-Security` max-age when `DJANGO_HTTPS` is on.",
    DJANGO,
)
DJANGO_HSTS_PRELOAD = declare(
    "DJANGO_HSTS_PRELOAD",
    "false",
    boolean,
    "Add `preload` to HSTS. Opt-in: preloading is hard to undo.",
    DJANGO,
)

EXAMPLE_UPSTREAM_URL = declare(
    "EXAMPLE_UPSTREAM_URL",
    "",
    http_url_or_empty,
    "The service the example's `/api/upstream` views call (`uvicorn example.upstream:app` "
    "is a stand-in); empty: they answer 503.",
    EXAMPLE,
)

CHANNEL_LAYER_URL = declare(
    "CHANNEL_LAYER_URL",
    "",
    cache_url,
    "Redis for the Channels layer (`channels-redis`), e.g. `redis://redis:6379/1`: the "
    "example's broadcast reaches sockets on every worker and pod. Empty: an in-memory "
    "layer, which reaches only the sockets of the same worker.",
    EXAMPLE,
)


@validation.rule
def secret_key_problems(snapshot: env.Snapshot) -> list[str]:
    if snapshot.DJANGO_SECRET_KEY is None and not snapshot.DJANGO_DEBUG:
        return [
            "DJANGO_SECRET_KEY is not set; production needs one (at least 50 random "
            "characters), e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        ]
    return []


@validation.warning
def django_warnings(snapshot: env.Snapshot) -> list[str]:
    found = []
    if snapshot.DJANGO_DEBUG:
        found.append(
            "DJANGO_DEBUG=true: Django's debug page shows code, settings and the request to "
            "anyone whose request fails, and every SQL query is kept in memory; never in "
            "production (URL passwords are hidden from the page, nothing else is)."
        )
    elif not snapshot.DJANGO_ALLOWED_HOSTS:
        found.append(
            "DJANGO_ALLOWED_HOSTS is empty: every request but the health probes is answered "
            "400 while the pod reports ready; set the site's host names, e.g. "
            "DJANGO_ALLOWED_HOSTS=shop.example.com."
        )
    if snapshot.CHANNEL_LAYER_URL and "channel_layer" not in snapshot.HEALTH_CHECKS:
        found.append(
            "CHANNEL_LAYER_URL is set but HEALTH_CHECKS does not check it: while its Redis is "
            "away the broadcast's sockets are closed (1012) and refused (503) and the pod stays "
            "ready; add channel_layer, e.g. HEALTH_CHECKS=database,channel_layer."
        )
    return found
