"""Imported when Python starts ``gunicorn`` in an environment where
django-k8s-runtime is installed: ``django_k8s_runtime.pth`` looks at the program's
name and imports this only then, so any other Python start pays a comparison.

Gunicorn reads two variables of its own before any config module runs:
``WEB_CONCURRENCY`` with ``int()`` while importing its settings, and
``GUNICORN_CMD_ARGS`` with its argument parser. ``WEB_CONCURRENCY=x`` ended in a
traceback, and a ``GUNICORN_CMD_ARGS`` Gunicorn's parser refuses in its usage
text, instead of the one line every other mistake gets. This says that line
first; ``check-env`` says the same (:func:`problems`). Why a start-up hook at all:
the repository's architecture notes, "The start-up hook".
"""

import os
import sys


def web_concurrency_problem(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        int(raw)
    except ValueError:
        return (
            f"WEB_CONCURRENCY={raw!r} is not valid: expected a whole number (Gunicorn reads "
            "it before any configuration; GUNICORN_WORKERS, when set, decides the worker count)."
        )
    return None


def command_line_problem(raw: str | None) -> str | None:
    """The registry's line for a GUNICORN_CMD_ARGS that Gunicorn's parser refuses
    (its validators run later, after the configuration, which reports them)."""
    if raw is None:
        return None
    import shlex

    from django_k8s_runtime import env, gunicorn_args

    try:
        gunicorn_args.parse(shlex.split(raw))
    except ValueError:  # gunicorn_args.Invalid, or shlex's unclosed quote
        return env.load({"GUNICORN_CMD_ARGS": raw}).problems[0]
    return None


def problems() -> list[str]:
    """What Gunicorn would stop on before reading any configuration."""
    found = [
        web_concurrency_problem(os.environ.get("WEB_CONCURRENCY")),
        command_line_problem(os.environ.get("GUNICORN_CMD_ARGS")),
    ]
    return [problem for problem in found if problem]


def _check() -> None:
    if not sys.argv or os.path.basename(sys.argv[0]) != "gunicorn":
        return  # imported by check-env, or by hand
    try:
        found = problems()
    except ImportError:  # the runtime half-installed: Gunicorn will say what it says
        return
    if found:
        for problem in found:
            print(f"configuration error: {problem}", file=sys.stderr, flush=True)
        # Not sys.exit(): Python is still starting (this runs from a .pth file), and an
        # exception here is a fatal start-up error with a traceback.
        os._exit(1)


_check()
