# Gunicorn loads ./gunicorn.conf.py when no -c is given; the settings live in config/gunicorn.py.
from config.gunicorn import *  # noqa: F403
