"""The test site's own variables, declared as any project declares its own (with the
runtime's ``declare()``, read from its snapshot): the secret key and the rule that
asks for it, debug mode, the host names, the channel layer's Redis, and an upstream's
URL (a setting whose password the debug page must not show).

The names are the ones a Django project usually gives them; this repository's
service declares its own (config/env.py), in processes of its own: a process runs
one site or the other, never both.
"""

from django_k8s_runtime import env, validation
from django_k8s_runtime.env import (
    boolean,
    cache_url,
    declare,
    host_list,
    http_url_or_empty,
    secret_key,
)

SITE = "Test site"

DJANGO_SECRET_KEY = declare(
    "DJANGO_SECRET_KEY", None, secret_key, "Django's secret key; required unless debug.", SITE
)
DJANGO_DEBUG = declare("DJANGO_DEBUG", "false", boolean, "Django's debug mode.", SITE)
DJANGO_ALLOWED_HOSTS = declare(
    "DJANGO_ALLOWED_HOSTS", "", host_list(), "Host names the site answers to.", SITE
)
CHANNEL_LAYER_URL = declare(
    "CHANNEL_LAYER_URL", "", cache_url, "Redis for the channel layer; empty: in memory.", SITE
)
UPSTREAM_URL = declare(
    "UPSTREAM_URL", "", http_url_or_empty, "A service the site would call (a setting).", SITE
)


@validation.rule
def secret_key_problems(snapshot: env.Snapshot) -> list[str]:
    if snapshot.DJANGO_SECRET_KEY is None and not snapshot.DJANGO_DEBUG:
        return ["DJANGO_SECRET_KEY is not set; the test site needs one unless DJANGO_DEBUG."]
    return []
