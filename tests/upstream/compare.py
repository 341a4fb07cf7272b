"""Upstream's suite run twice, against upstream's own classes (the oracle) and the
runtime's: the two must agree test for test, but for ``divergences.toml``."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DIVERGENCES = Path(__file__).with_name("divergences.toml")
summaries: list[str] = []  # printed at the end of the session (conftest.py)


@dataclass
class Comparison:
    suite: str
    compared: int = 0
    agreed: int = 0
    listed: list[str] = field(default_factory=list)  # differ, as divergences.toml says
    left_out: int = 0  # not the runtime's to test (divergences.toml)
    skipped_upstream: int = 0  # upstream skips it for its own classes
    unexpected: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.suite}: {self.compared} upstream tests run against the runtime and "
            f"upstream's own classes: {self.agreed} agree, {len(self.listed)} differ as "
            f"divergences.toml says; {self.left_out} left out (not the runtime's), "
            f"{self.skipped_upstream} skipped by upstream itself"
        )

    def check(self) -> None:
        """Fail on any difference no one explained, and on a stale explanation."""
        if self.unexpected or self.stale:
            raise AssertionError(self.problems())
        assert self.compared > 150, self.line()  # the suites ran, not an empty selection

    def problems(self) -> str:
        lines = [f"{self.suite}: the runtime differs from upstream where no one said why:"]
        lines += [f"  {entry}" for entry in self.unexpected]
        if self.stale:
            lines.append("divergences.toml lists tests that now agree (remove them):")
            lines += [f"  {test_id}" for test_id in self.stale]
        return "\n".join(lines)


def divergences(suite: str) -> dict[str, dict[str, str]]:
    return tomllib.loads(DIVERGENCES.read_text()).get(suite, {})


def compare(suite: str, label: str, oracle_file: Path, ours_file: Path) -> Comparison:
    oracle = json.loads(oracle_file.read_text())
    ours = json.loads(ours_file.read_text())
    listed = divergences(suite)
    result = Comparison(label)
    for test_id in sorted(oracle.keys() | ours.keys()):
        theirs, mine = oracle.get(test_id), ours.get(test_id)
        if theirs is None or mine is None:
            result.unexpected.append(f"{test_id}: ran in one run only")
            continue
        if theirs["outcome"] == "left out":
            result.left_out += 1
            continue
        if theirs["outcome"] == "skipped":
            result.skipped_upstream += 1
            continue
        result.compared += 1
        same = theirs["outcome"] == mine["outcome"]
        if listed.get(test_id, {}).get("kind") == "differs":
            (result.stale if same else result.listed).append(test_id)
        elif same:
            result.agreed += 1
        else:
            last = (mine["detail"].strip().splitlines() or [""])[-1][:300]
            result.unexpected.append(
                f"{test_id}: upstream {theirs['outcome']}, runtime {mine['outcome']}: {last}"
            )
    summaries.append(result.line())
    return result
