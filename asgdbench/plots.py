"""PNG figures of a result folder (needs the optional ``[plot]`` extra: matplotlib).

Four figures: smoothed training loss against wall time, time to target against
thread count, and the staleness and CAS-attempt histograms. matplotlib is
imported only here and only when plotting, with the Agg backend, so the
benchmark itself never needs it or a display.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from asgdbench.errors import UserError
from asgdbench.report import Row, pooled_histogram
from asgdbench.result import RunResult

INSTALL_HINT = "pip install 'asgdbench[plot]'"


def require_matplotlib() -> ModuleType:
    """matplotlib's pyplot on the Agg backend, or a UserError that says how to install it."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise UserError(f"plotting needs matplotlib: {INSTALL_HINT}") from None


def write_plots(folder: Path, results: Sequence[RunResult], rows: Sequence[Row]) -> list[Path]:
    """Draw every figure the results allow into ``folder``; returns the files written."""
    plt = require_matplotlib()
    figures = {
        "loss_vs_time.png": _loss_vs_time(plt, results),
        "time_to_target_vs_threads.png": _time_to_target_vs_threads(plt, rows),
        "staleness_histograms.png": _histograms(
            plt, results, lambda r: r.staleness, "staleness (updates in between)", log_x=True),
        "cas_attempts_histograms.png": _histograms(
            plt, [r for r in results if r.cas is not None], lambda r: r.cas["attempts"],
            "CAS attempts per update"),
    }
    written = []
    for name, figure in figures.items():
        if figure is None:
            continue
        path = folder / name
        try:
            figure.savefig(path, dpi=110)
        except OSError as error:
            raise UserError(f"cannot write {path} ({error.strerror})") from None
        finally:
            plt.close(figure)
        written.append(path)
    return written


def _threads_label(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


def _series_label(algorithm: str, lr: float, several_lrs: bool) -> str:
    return f"{algorithm} lr={lr:g}" if several_lrs else algorithm


def _loss_vs_time(plt: ModuleType, results: Sequence[RunResult]):
    """One panel per thread count, one colour per strategy, one line per repeat."""
    traced = [r for r in results if r.loss_trace]
    if not traced:
        return None
    thread_counts = sorted({r.config.threads for r in traced})
    several_lrs = len({r.config.lr for r in traced}) > 1
    labels = list(dict.fromkeys(_series_label(r.config.algorithm, r.config.lr, several_lrs)
                                for r in traced))
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    figure, axes = _panel_grid(plt, len(thread_counts), width=4.5, height=4, columns=4,
                               sharey=True)
    for ax, count in zip(axes, thread_counts, strict=True):
        shown = set()
        for result in (r for r in traced if r.config.threads == count):
            label = _series_label(result.config.algorithm, result.config.lr, several_lrs)
            seconds = [point[0] for point in result.loss_trace]
            losses = [point[2] for point in result.loss_trace]
            ax.plot(seconds, losses, color=colours[label], alpha=0.7, linewidth=1,
                    label=None if label in shown else label)
            shown.add(label)
        targets = {r.config.target_loss for r in traced if r.config.target_loss is not None}
        for target in targets:
            ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(_threads_label(count))
        ax.set_xlabel("wall time [s]")
        ax.set_ylabel("smoothed training loss")
        ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _time_to_target_vs_threads(plt: ModuleType, rows: Sequence[Row]):
    """Median time to target with its min-max range, converged cells only."""
    converged = [row for row in rows if row.time_to_target_median is not None]
    if not converged:
        return None
    several_lrs = len({row.lr for row in rows}) > 1
    figure, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[Row]] = {}
    for row in converged:
        series.setdefault(_series_label(row.algorithm, row.lr, several_lrs), []).append(row)
    for label, points in series.items():
        points.sort(key=lambda row: row.threads)
        medians = [row.time_to_target_median for row in points]
        below = [row.time_to_target_median - row.time_to_target_min for row in points]
        above = [row.time_to_target_max - row.time_to_target_median for row in points]
        ax.errorbar([row.threads for row in points], medians, yerr=[below, above], marker="o",
                    capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({row.threads for row in rows}))
    ax.set_xticklabels([str(t) for t in sorted({row.threads for row in rows})])
    ax.set_xlabel("threads")
    ax.set_ylabel("time to target [s] (converged runs)")
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _histograms(plt: ModuleType, results: Sequence[RunResult], summary_of, xlabel: str,
                *, log_x: bool = False):
    """One panel per strategy, one line per thread count, repeats pooled.

    ``log_x`` (symmetric log) for long-tailed values such as staleness, whose
    bulk sits within a few updates while preempted threads reach thousands.
    """
    if not results:
        return None
    algorithms = list(dict.fromkeys(r.config.algorithm for r in results))
    figure, axes = _panel_grid(plt, len(algorithms), width=4.5, height=3.5)
    for ax, algorithm in zip(axes, algorithms, strict=False):
        mine = [r for r in results if r.config.algorithm == algorithm]
        for threads in sorted({r.config.threads for r in mine}):
            counts = pooled_histogram(summary_of(r) for r in mine if r.config.threads == threads)
            if counts:
                top = max(counts)
                edges = [value - 0.5 for value in range(top + 2)]
                # baseline=None: each bin is a horizontal segment, so even a lone bin shows
                ax.stairs([counts.get(value, 0) for value in range(top + 1)], edges,
                          baseline=None, label=_threads_label(threads))
        ax.set_yscale("log")
        ax.set_xlim(left=-0.5)  # values are counts: nothing below 0
        if log_x:
            ax.set_xscale("symlog", linthresh=1)
        else:
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_title(algorithm)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _panel_grid(plt: ModuleType, count: int, *, width: float, height: float,
                columns: int = 3, **options):
    """A figure with ``count`` panels, at most ``columns`` a row; returns it and the panels."""
    columns = min(columns, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                                squeeze=False, **options)
    panels = list(axes.flat)
    for unused in panels[count:]:
        unused.set_visible(False)
    return figure, panels[:count]
