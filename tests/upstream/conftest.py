"""Print how many of upstream's own tests ran against the runtime."""

from __future__ import annotations

from typing import Any

from tests.upstream.compare import summaries


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if summaries:
        terminalreporter.section("upstream's own test suites")
        for line in summaries:
            terminalreporter.write_line(line)
