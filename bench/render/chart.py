"""docs/benchmarks.png: req/s, CPU per request and p99 per endpoint, and the mixed
load, from the HTTP phase's results (matplotlib, from the bench group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.render.figures import Figures
from bench.results import Contender


def draw(f: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contenders = f.contenders
    colours = {c.key: plt.get_cmap("tab10")(index % 10) for index, c in enumerate(contenders)}
    figure, axes = plt.subplot_mosaic(
        [["rps", "rps", "cpu", "cpu", "p99", "p99"], ["mixed_rps"] * 3 + ["mixed_p99"] * 3],
        figsize=(18, 10.5),
        height_ratios=[1, 0.8],
    )
    labels = [
        f"{p}\n({f.connections_for(p)} conn.)"
        if f.connections_for(p) != f.options.connections
        else p
        for p in f.endpoints
    ]
    width = 0.8 / len(contenders)
    for key, metric, title in (
        ("rps", "rps", "Requests per second (higher is better)"),
        ("cpu", "cpu_us", "Server CPU per request, µs (lower is better)"),
        ("p99", "p99_ms", "Latency p99, ms (lower is better)"),
    ):
        axis = axes[key]
        for index, c in enumerate(contenders):
            xs, ys = [], []
            for position, endpoint in enumerate(f.endpoints):
                found = f.cell(c.key, endpoint)
                if found:
                    xs.append(position + (index - (len(contenders) - 1) / 2) * width)
                    ys.append(getattr(found, metric))
            axis.bar(xs, ys, width, label=c.label, **_style(c, colours))
        axis.set_yscale("log")
        axis.set_xticks(range(len(f.endpoints)), labels, rotation=20, fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)
    _mixed(f, axes["mixed_rps"], axes["mixed_p99"], colours)
    handles, names = axes["rps"].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=4, fontsize=9, frameon=False)
    figure.suptitle(
        f"Same Django project, {f.options.workers} worker on one core, "
        f"{f.started:%Y-%m-%d} (log scales)"
    )
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def _style(c: Contender, colours: dict[str, Any]) -> dict[str, Any]:
    return {
        "color": colours[c.key],
        "edgecolor": "black" if c.role == "ours" else "none",
        "linewidth": 1.5 if c.role == "ours" else 0,
        "hatch": "//" if c.role == "ceiling" else ".." if c.role == "variant" else None,
    }


def _mixed(f: Figures, rps_axis: Any, p99_axis: Any, colours: dict[str, Any]) -> None:
    shown = f.mixed_contenders
    paths = f.mixed_paths
    labels = [f"{path}\n({n} conn.)" for path, n in f.http.mixed_load]
    for axis, metric, title in (
        (rps_axis, "rps", "Mixed load, all three at once: requests per second"),
        (p99_axis, "p99_ms", "Mixed load: latency p99, ms"),
    ):
        if not shown:
            axis.set_visible(False)
            continue
        width = 0.8 / len(shown)
        missing = []
        for index, c in enumerate(shown):
            xs, ys = [], []
            for position, path in enumerate(paths):
                x = position + (index - (len(shown) - 1) / 2) * width
                found = f.mixed_cell(c.key, path)
                if found:
                    xs.append(x)
                    ys.append(getattr(found, metric))
                else:
                    missing.append(x)
            axis.bar(xs, ys, width, **_style(c, colours))
        for x in missing:  # a contender without that endpoint (gthread has no probe)
            axis.annotate(
                "n/a",
                (x, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="grey",
            )
        axis.set_yscale("log")
        axis.set_xticks(range(len(paths)), labels, fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)
