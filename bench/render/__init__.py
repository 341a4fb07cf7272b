"""The one renderer: every report ``make bench`` publishes, from a results file alone
(``bench/results.py``), so that ``python -m bench --report FILE`` gives the same
pages a run gave.

- ``benchmarks.md``: the HTTP phase (``http.py``), the hostile clients
  (``hostile.py``); its chart ``benchmarks.png`` (``chart.py``);
- ``benchmarks-websockets.md``: the WebSocket phase (``websockets.py``);
- the figures README.md and docs/performance.md quote (``headline.py``), where the
  reports are written beside them (the repository's own docs/).
"""

from __future__ import annotations

from pathlib import Path

from bench.render import chart, headline, http, summary, websockets
from bench.render.figures import Figures
from bench.render.targets import targets
from bench.results import Results

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
HTTP_REPORT, WEBSOCKET_REPORT = "benchmarks.md", "benchmarks-websockets.md"


def pages(results: Results) -> dict[str, str]:
    """Each report's name and text."""
    found = {}
    if results.http or results.hostile:
        found[HTTP_REPORT] = http.page(results)
    if results.websockets:
        found[WEBSOCKET_REPORT] = websockets.page(results.websockets)
    return found


def blocks(results: Results) -> dict[Path, dict[str, str]]:
    """The generated blocks of the documents that quote the reports: file -> name -> text."""
    if results.http is None:
        return {}
    f = Figures(results.http)
    return {
        ROOT / "README.md": {"headline": summary.readme(f)},
        DOCS / "performance.md": {"summary": summary.summary(results)},
    }


def publish(results: Results, directory: Path, *, with_chart: bool = True) -> list[Path]:
    """Write every report into ``directory`` (and the chart, unless told not to); if it is
    the repository's docs/, refresh what README.md and docs/performance.md quote too."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages(results).items():
        (directory / name).write_text(text)
        written.append(directory / name)
    if results.http and with_chart:
        chart.draw(Figures(results.http), directory / http.CHART)
        written.append(directory / http.CHART)
    if directory.resolve() == DOCS:
        for path, named in blocks(results).items():
            text = path.read_text()
            for name, content in named.items():
                text = summary.replace_block(text, name, content)
            path.write_text(text)
            written.append(path)
    return written


def console_summary(results: Results) -> str:
    """The HTTP phase's headline and targets, for the terminal."""
    if results.http is None:
        return ""
    f = Figures(results.http)
    lines = ["", *headline.lines(f), "", "Targets:"]
    for t in targets(f):
        decided, _, why = t.verdict.replace("**", "").partition(":")
        lines.append(f"- {t.name}: {t.measured} => {decided.upper()}{':' if why else ''}{why}")
    lines.append(f"Total time: {results.http.run.elapsed_seconds / 60:.1f} min")
    return "\n".join(lines)
