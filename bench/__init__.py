"""``make bench``: this stack against the alternatives, measured side by side.

The same Django project is served by each contender with the same environment and
worker count, on a core of its own, while the load comes from the other core.
Rounds are interleaved so that drift (other processes, thermal or frequency
changes) hits every contender alike, and the median round is reported. A run
writes its raw results to docs/benchmarks.json (``results.py``) and the reports
are rendered from that file alone (``render/``). ``python -m bench --help`` lists
the knobs; docs/performance.md reads the results.
"""
