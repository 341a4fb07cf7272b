"""Real processes for the tests and the benchmark: free ports, process trees,
throw-away PostgreSQL clusters and the wrk load generator.

One place that both ``tests/`` and ``bench/`` use, so neither imports the other.
Never part of the image (``.dockerignore``).
"""
