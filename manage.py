#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

The runtime's ``execute_from_command_line`` is Django's, with no connection pool
and one line for a database that cannot be reached (django_k8s_runtime/management.py).
"""

import os
import sys

from django_k8s_runtime.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    execute_from_command_line(sys.argv)
