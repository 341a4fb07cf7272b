"""Run at every start of Python in an environment where django-k8s-runtime is
installed (``django_k8s_runtime.pth``), and does nothing unless it is Gunicorn.

Gunicorn reads ``WEB_CONCURRENCY`` with ``int()`` while importing its own settings,
before any config module runs, so ``WEB_CONCURRENCY=x`` ended in a traceback
instead of the one line every other mistake gets. This says that line first.
Kept tiny: it costs every Python start in the environment one small import.
"""

import os
import sys


def _check_web_concurrency() -> None:
    if not sys.argv or os.path.basename(sys.argv[0]) != "gunicorn":
        return
    raw = os.environ.get("WEB_CONCURRENCY")
    if raw is None:
        return
    try:
        int(raw)
    except ValueError:
        print(
            f"configuration error: WEB_CONCURRENCY={raw!r} is not valid: expected a whole "
            "number (Gunicorn reads it before any configuration; GUNICORN_WORKERS, when "
            "set, decides the worker count).",
            file=sys.stderr,
            flush=True,
        )
        # Not sys.exit(): Python is still starting (this runs from a .pth file), and an
        # exception here is a fatal start-up error with a traceback.
        os._exit(1)


_check_web_concurrency()
