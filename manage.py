#!/usr/bin/env python
"""Django's command-line utility for administrative tasks (see config/management.py)."""

import sys

from config import management

if __name__ == "__main__":
    management.main(sys.argv)
