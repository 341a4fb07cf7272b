"""``make bench`` publishes only what its results file renders to: the committed
reports, and the figures README.md and docs/performance.md quote, are exactly what
docs/benchmarks.json gives (``python -m bench --report docs/benchmarks.json`` makes
them so), the file reads back as written, and what the reports name exists."""

from __future__ import annotations

import dataclasses
import pkgutil
from pathlib import Path

import pytest

from bench import __main__ as cli
from bench import render, results
from bench.contenders import STOCK_LAYERS
from bench.render.summary import replace_block

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RESULTS = DOCS / "benchmarks.json"
AGAIN = "python -m bench --report docs/benchmarks.json renders it again"


@pytest.fixture(scope="module")
def committed() -> results.Results:
    return results.read(RESULTS)


def test_the_committed_results_hold_every_phase(committed: results.Results) -> None:
    assert committed.http is not None
    assert committed.websockets is not None
    assert committed.hostile is not None
    assert {c.key for c in committed.http.contenders} >= {"ours", "uvicorn", "gthread"}
    for phase in (committed.http, committed.websockets, committed.hostile):
        assert phase.run.packages["django-k8s-runtime"] != "not installed"
        assert phase.run.machine.cores >= 1


def test_the_results_file_reads_back_as_written(committed: results.Results) -> None:
    assert results.dumps(committed) == RESULTS.read_text()


@pytest.mark.parametrize("report", [render.HTTP_REPORT, render.WEBSOCKET_REPORT])
def test_each_committed_report_is_what_the_results_render(
    committed: results.Results, report: str
) -> None:
    assert render.pages(committed)[report] == (DOCS / report).read_text(), AGAIN


def test_readme_and_the_benchmarks_page_quote_the_committed_results(
    committed: results.Results,
) -> None:
    quoted = render.blocks(committed)
    assert set(quoted) == {ROOT / "README.md", DOCS / "performance.md"}
    for path, named in quoted.items():
        text = path.read_text()
        for name, content in named.items():
            assert content.strip()
            assert replace_block(text, name, content) == text, f"{path.name}: {AGAIN}"


def test_the_report_command_renders_a_results_file_without_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--report", str(RESULTS), "--output", str(tmp_path), "--no-chart"]) == 0
    for report in (render.HTTP_REPORT, render.WEBSOCKET_REPORT):
        assert (tmp_path / report).read_text() == (DOCS / report).read_text()
    assert "Targets:" in capsys.readouterr().out


def test_a_file_that_is_not_results_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "old.json"
    wrong.write_text('{"schema": 0}')
    assert cli.main(["--report", str(wrong), "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "schema 0, this bench reads schema 1" in error
    assert list(tmp_path.iterdir()) == [wrong]


def test_the_layers_the_report_says_the_peers_serve_exist() -> None:
    """bench/stock.py wraps Django's handler in the runtime's own layers, by this name,
    and the report prints the name it used (it once printed one that no longer existed)."""
    assert callable(pkgutil.resolve_name(STOCK_LAYERS))
    assert f"(`{STOCK_LAYERS}`," in (DOCS / render.HTTP_REPORT).read_text()


def only(found: results.Results, keys: set[str]) -> results.Results:
    """The results as a run of fewer contenders (``--only``) would have made them."""
    http = found.http
    assert http is not None
    return dataclasses.replace(
        found,
        http=dataclasses.replace(
            http,
            contenders=tuple(c for c in http.contenders if c.key in keys),
            runs=[r for r in http.runs if r.contender in keys],
            mixed=[r for r in http.mixed if r.contender in keys],
            memory={k: v for k, v in http.memory.items() if k in keys},
            overload={k: v for k, v in http.overload.items() if k in keys},
        ),
    )


@pytest.mark.parametrize(
    "keys", [{"ours"}, {"ours", "gthread"}, {"ours", "uvicorn", "ours-deployed"}]
)
def test_a_run_of_some_contenders_renders(committed: results.Results, keys: set[str]) -> None:
    partial = only(committed, keys)
    page = render.pages(partial)[render.HTTP_REPORT]
    assert "| **ours: Gunicorn + django-k8s-runtime** |" in page
    assert all(blocks for blocks in render.blocks(partial).values())


@pytest.mark.parametrize("phase", ["http", "websockets", "hostile"])
def test_a_run_of_one_phase_renders_its_reports(committed: results.Results, phase: str) -> None:
    alone = results.Results(**{phase: getattr(committed, phase)})
    pages = render.pages(alone)
    expected = render.WEBSOCKET_REPORT if phase == "websockets" else render.HTTP_REPORT
    assert list(pages) == [expected]


def test_a_run_keeps_the_phases_it_did_not_measure(committed: results.Results) -> None:
    fresh = results.Results(hostile=committed.hostile)
    assert fresh.merged_over(committed) == committed


def test_no_bench_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "bench").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert long == {}
