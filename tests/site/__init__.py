"""The runtime's own test site: a small Django project on the runtime alone (settings.py)."""
