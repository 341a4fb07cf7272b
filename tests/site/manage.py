"""The test site's ``manage.py``, as README's adoption makes a project's: Django's
commands through the runtime's. Run as ``python -m tests.site.manage``."""

import os
import sys

from django_k8s_runtime.management import execute_from_command_line


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.site.settings")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
