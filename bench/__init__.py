"""``make bench``: this stack against the alternatives, measured side by side.

The same Django project is served by each contender (``contenders.py``) with the
same environment and worker count, on a core of its own, while ``wrk`` drives it
from the other core. Rounds are interleaved so that drift (other processes,
thermal or frequency changes) hits every contender alike, and the median round
is reported. ``python -m bench --help`` lists the knobs; ``docs/benchmarks.md``
is the result.
"""
