"""Request ids made in the process: random version-4 UUIDs, never shared by workers."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from django_k8s_runtime.observability import request_id

pytestmark = pytest.mark.in_process


def test_a_made_id_is_a_random_uuid_in_hex() -> None:
    made = [request_id.make() for _ in range(3000)]  # more than one draw
    assert len(set(made)) == len(made)
    for each in made:
        parsed = uuid.UUID(hex=each)
        assert (parsed.hex, parsed.version, parsed.variant) == (each, 4, uuid.RFC_4122)


FORKED = """
import os
from django_k8s_runtime.observability import request_id
request_id.make()  # the parent has ids drawn and waiting, as a master might
reader, writer = os.pipe()
child = os.fork()
if child == 0:
    os.write(writer, " ".join(request_id.make() for _ in range(10)).encode())
    os._exit(0)
os.close(writer)
with os.fdopen(reader) as pipe:
    print(pipe.read())
os.waitpid(child, 0)
print(" ".join(request_id.make() for _ in range(10)))
"""


def test_a_forked_worker_draws_its_own_ids() -> None:
    # In a process of its own: this one runs threads, which fork() warns about.
    done = subprocess.run(
        [sys.executable, "-c", FORKED], capture_output=True, text=True, check=True, timeout=60
    )
    childs, parents = (set(line.split()) for line in done.stdout.splitlines())
    assert len(childs) == len(parents) == 10
    assert not childs & parents


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (b"abc-12345", True),
        (b"x" * 128, True),
        (b"short", False),
        (b"x" * 129, False),
        (b"a b c d e f", False),
        (b"line\r\nbreak", False),
        (None, False),
    ],
)
def test_only_a_short_plain_incoming_id_is_kept(incoming, kept) -> None:
    accepted = request_id.accept_or_make(incoming)
    assert (accepted == (incoming or b"").decode()) is kept
