"""``python -m django_k8s_runtime check-env``: check and show the configuration
without starting the server, for a CI pipeline or an operator at 3 a.m.

It validates every variable exactly as start-up does (the project's too, when
``DJANGO_SETTINGS_MODULE`` or ``--settings`` names its settings module), with
what Gunicorn itself reads (``WEB_CONCURRENCY``, ``GUNICORN_CMD_ARGS``), then
prints each effective value with where it came from (the variable, a fallback
such as ``WEB_CONCURRENCY``, or the default), secrets masked and passwords in
URLs starred, followed by every problem and warning start-up would give. Exit
status 1 if there is a problem, else 0. Without a settings module it says that
the project's own variables were not checked. With the project's settings, the
``package.module:callable`` entries of ``HEALTH_CHECKS`` are imported as start-up
imports them (Django set up).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TextIO

import _django_k8s_runtime_preflight as preflight
from django_k8s_runtime import env, masking, validation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m django_k8s_runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-env", help="check and show the configuration")
    check.add_argument("--settings", help="the project's settings module")
    args = parser.parse_args(argv)
    settings_module = args.settings or os.environ.get("DJANGO_SETTINGS_MODULE")
    from_settings: tuple[str, ...] = ()
    if settings_module:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
        try:
            importlib.import_module(settings_module)  # declares the project's variables
        except env.ConfigError as error:
            from_settings = error.messages  # listed below, with everything else
        except ImportError as error:
            print(f"cannot import the settings module {settings_module!r}: {error}")
            return 2
    return check_env(env.load(), settings_module=settings_module, from_settings=from_settings)


def check_env(
    snapshot: env.Snapshot,
    out: TextIO | None = None,
    *,
    settings_module: str | None = None,
    from_settings: tuple[str, ...] = (),
) -> int:
    """``from_settings``: the lines the settings module stopped with, as start-up would
    (the rules find most of them again; a settings helper's own, such as a ``DB_*``
    variable beside the project's own ``DATABASES``, only the helper knows)."""
    out = out or sys.stdout
    width = max(len(name) for name in env.REGISTRY)
    for name in env.REGISTRY:
        try:
            shown, source = shown_value(name, snapshot[name]), snapshot.source(name)
        except env.ConfigError:
            shown, source = "(not valid, see below)", ""
        print(f"{name:<{width}}  {shown:<40}  {source}", file=out)
    # Gunicorn reads WEB_CONCURRENCY itself, even when GUNICORN_WORKERS is set.
    before_gunicorn = preflight.web_concurrency_problem(os.environ.get("WEB_CONCURRENCY"))
    problems = [before_gunicorn] if before_gunicorn else []
    problems += validation.problems(snapshot)
    problems += [line for line in from_settings if line not in problems]
    if not problems and settings_module:
        problems = project_check_problems(snapshot, settings_module)
    for line in problems:
        print(f"configuration error: {line}", file=out)
    if not problems:
        for line in validation.warnings(snapshot):
            print(f"configuration warning: {line}", file=out)
        if not settings_module:
            print(NOT_CHECKED, file=out)
        print("configuration ok", file=out)
    return 1 if problems else 0


# Start-up imports the project's application, whose settings declare its variables;
# check-env knows them only from DJANGO_SETTINGS_MODULE or --settings.
NOT_CHECKED = (
    "configuration not checked: the project's own variables (its settings module declares "
    "them), as DJANGO_SETTINGS_MODULE is not set; set it, or pass --settings "
    "mysite.settings, to check them too."
)


def project_check_problems(snapshot: env.Snapshot, settings_module: str) -> list[str]:
    """One line for each ``package.module:callable`` of HEALTH_CHECKS that does not
    import, and for ``channel_layer`` without a layer, as start-up would find them
    (after ``django.setup()``)."""
    entries = [name for name in snapshot.HEALTH_CHECKS if ":" in name or name == "channel_layer"]
    if not entries:
        return []
    import django

    from django_k8s_runtime.health.checks import CannotLoadCheck, channel_layers, load_callable

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    django.setup(set_prefix=False)
    found = []
    for entry in entries:
        try:
            channel_layers() if entry == "channel_layer" else load_callable(entry)
        except CannotLoadCheck as error:
            found.append(f"HEALTH_CHECKS entry {entry!r} is not valid: {error}.")
    return found


def shown_value(name: str, value: object) -> str:
    if value is None:
        return "(unset)"
    # A Mapping (GUNICORN_CMD_ARGS: the settings it sets) shows as its str().
    text = ",".join(value) if isinstance(value, tuple) else str(value)
    if isinstance(value, int) and value >= MIB and "bytes" in env.REGISTRY[name].parser.allowed:
        text += f" ({value / MIB:g} MiB)"  # REQUEST_MAX_BODY_SIZE=33554432 (32 MiB)
    return masking.shown(name, text) if text else "(empty)"


MIB = 1024 * 1024


if __name__ == "__main__":
    sys.exit(main())
