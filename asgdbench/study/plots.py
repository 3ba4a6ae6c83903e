"""PNG figures of a result folder (needs the optional ``[plot]`` extra: matplotlib).

Four figures: smoothed training loss against wall time, time to target against
thread count, and the staleness and CAS-attempt histograms. matplotlib is
imported only here and only when plotting, with the Agg backend, so the
benchmark itself never needs it or a display.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from asgdbench.engine.run_result import RunResult
from asgdbench.errors import UserError
from asgdbench.study.report import Row, pooled_histogram

INSTALL_HINT = "pip install 'asgdbench[plot]'"
EXACT_BINS_UP_TO = 8
"""Histograms whose values stay within this get one bar per value, not doubling bins."""


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
            plt, results, lambda r: r.staleness, "staleness (updates in between)"),
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


def _series_label(strategy: str, lr: float, several_lrs: bool) -> str:
    return f"{strategy} lr={lr:g}" if several_lrs else strategy


def _finite_trace(result: RunResult) -> tuple[list[float], list[float]]:
    """Seconds and smoothed losses of a run's trace, without the non-finite points."""
    points = [(point[0], point[2]) for point in result.loss_trace
              if point[2] is not None and math.isfinite(point[2]) and point[2] > 0]
    return [seconds for seconds, _ in points], [loss for _, loss in points]


def _loss_vs_time(plt: ModuleType, results: Sequence[RunResult]):
    """One panel per thread count, one colour per strategy, one line per repeat.

    The loss axis spans the runs that did not diverge; a diverged run is drawn
    dotted up to where it leaves the axis, and ends in a cross there.
    """
    traced = [r for r in results if _finite_trace(r)[0]]
    if not traced:
        return None
    thread_counts = sorted({r.config.threads for r in traced})
    several_lrs = len({r.config.lr for r in traced}) > 1
    labels = list(dict.fromkeys(_series_label(r.config.label, r.config.lr, several_lrs)
                                for r in traced))
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    kept = [r for r in traced if r.status != "diverged"] or traced
    losses = [loss for r in kept for loss in _finite_trace(r)[1]]
    bottom, top = min(losses) / 1.5, max(losses) * 1.5
    figure, axes = _panel_grid(plt, len(thread_counts), width=4.5, height=3.6, columns=4,
                               sharey=True)
    for ax, count in zip(axes, thread_counts, strict=True):
        for result in (r for r in traced if r.config.threads == count):
            label = _series_label(result.config.label, result.config.lr, several_lrs)
            seconds, values = _finite_trace(result)
            if result.status == "diverged":
                inside = [index for index, value in enumerate(values) if value <= top]
                end = (inside[-1] + 1) if inside else 1
                ax.plot(seconds[:end], [min(value, top) for value in values[:end]],
                        color=colours[label], linestyle=":", linewidth=1)
                ax.plot(seconds[end - 1], min(values[end - 1], top), marker="x",
                        color=colours[label], markersize=7)
            else:
                ax.plot(seconds, values, color=colours[label], alpha=0.7, linewidth=1)
        targets = {r.config.target_loss for r in traced if r.config.target_loss is not None}
        for target in targets:
            ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(bottom, top)
        ax.set_title(_threads_label(count))
        ax.set_xlabel("wall time [s]")
    axes[0].set_ylabel("smoothed training loss")
    handles = [plt.Line2D([], [], color=colours[label], label=label) for label in labels]
    if targets:
        handles.append(plt.Line2D([], [], color="grey", linestyle="--", label="target"))
    if any(r.status == "diverged" for r in traced):
        handles.append(plt.Line2D([], [], color="black", linestyle=":", marker="x",
                                  label="diverged (clipped)"))
    _legend_outside(figure, handles)
    return figure


def _time_to_target_vs_threads(plt: ModuleType, rows: Sequence[Row]):
    """Median time to target with its min-max range, converged cells only."""
    converged = [row for row in rows if row.time_to_target_median is not None]
    if not converged:
        return None
    several_lrs = len({row.lr for row in rows}) > 1
    figure, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    series: dict[str, list[Row]] = {}
    for row in converged:
        series.setdefault(_series_label(row.strategy, row.lr, several_lrs), []).append(row)
    for index, (label, points) in enumerate(series.items()):
        points.sort(key=lambda row: row.threads)
        medians = [row.time_to_target_median for row in points]
        below = [row.time_to_target_median - row.time_to_target_min for row in points]
        above = [row.time_to_target_max - row.time_to_target_median for row in points]
        # series side by side around each thread count, so that no point hides another
        dodge = 2 ** (0.04 * (index - (len(series) - 1) / 2))
        ax.errorbar([row.threads * dodge for row in points], medians, yerr=[below, above],
                    marker="o", capsize=3, label=label)
    thread_counts = sorted({row.threads for row in rows})
    if len(thread_counts) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(thread_counts)
    ax.set_xticklabels([str(t) for t in thread_counts])
    ax.minorticks_off()
    times = [row.time_to_target_min for row in converged] + \
        [row.time_to_target_max for row in converged]
    if max(times) > 10 * min(times):  # values spanning a decade or more
        ax.set_yscale("log")
    ax.set_xlabel("threads")
    ax.set_ylabel("time to target [s] (converged runs)")
    _legend_outside(figure, ax.get_legend_handles_labels()[0])
    return figure


def _histograms(plt: ModuleType, results: Sequence[RunResult], summary_of, xlabel: str):
    """One panel per strategy: the share of updates in each bin, one bar per thread count.

    Bins double in width (0, 1, 2-3, 4-7, ...) once values exceed
    :data:`EXACT_BINS_UP_TO`, so that a long tail (a
    preempted thread's staleness reaches thousands while the bulk sits
    within a few updates) stays readable, and bars place every thread count
    side by side, so that none hides another where they coincide. Shares
    (log axis) compare thread counts that ran different numbers of updates.
    Strategies whose histogram is one value throughout (seq's staleness is
    always 0) are named in the title instead of getting a flat panel.
    """
    if not results:
        return None
    strategies = list(dict.fromkeys(r.config.label for r in results))
    pooled = {strategy: {threads: pooled_histogram(summary_of(r) for r in results
                                                    if r.config.label == strategy
                                                    and r.config.threads == threads)
                          for threads in sorted({r.config.threads for r in results
                                                 if r.config.label == strategy})}
              for strategy in strategies}
    constant = {strategy: _single_value(by_threads) for strategy, by_threads in pooled.items()}
    shown = [strategy for strategy in strategies if constant[strategy] is None]
    omitted = [f"{strategy}: always {constant[strategy]}" for strategy in strategies
               if constant[strategy] is not None]
    if not shown:  # nothing varies: say so rather than draw flat panels
        figure, ax = plt.subplots(figsize=(6, 1.5), layout="constrained")
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"{xlabel}\n{'; '.join(omitted)}", ha="center", va="center")
        return figure
    values = [value for strategy in shown for counts in pooled[strategy].values()
              for value in counts]
    exact = max(values) <= EXACT_BINS_UP_TO  # few values: one bin each
    bin_of = (lambda value: value) if exact else _bin
    bins = range(bin_of(min(values)), bin_of(max(values)) + 1)
    all_threads = sorted({threads for strategy in shown for threads in pooled[strategy]})
    colours = {threads: f"C{index % 10}" for index, threads in enumerate(all_threads)}
    figure, axes = _panel_grid(plt, len(shown), width=max(4.5, 0.45 * len(bins)), height=3.4,
                               columns=2, sharey=True)
    for ax, strategy in zip(axes, shown, strict=True):
        groups = pooled[strategy]
        width = 0.8 / len(groups)
        for index, (threads, counts) in enumerate(groups.items()):
            shares = [0.0] * len(bins)
            total = sum(counts.values())
            for value, count in counts.items():
                shares[bin_of(value) - bins.start] += count / total
            offset = (index - (len(groups) - 1) / 2) * width
            ax.bar([position + offset for position in range(len(bins))], shares, width=width,
                   color=colours[threads])
        ax.set_yscale("log")
        ax.set_xticks(range(len(bins)), [str(number) if exact else _bin_label(number)
                                         for number in bins],
                      rotation=45 if len(bins) > 8 else 0)
        ax.set_title(strategy)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("share of updates")
    if omitted:
        figure.suptitle(f"not drawn ({'; '.join(omitted)})", fontsize="small")
    _legend_outside(figure, [plt.Rectangle((0, 0), 1, 1, color=colours[threads],
                                           label=_threads_label(threads))
                             for threads in all_threads])
    return figure


def _bin(value: int) -> int:
    """The doubling bin of a count: 0 -> 0, 1 -> 1, 2-3 -> 2, 4-7 -> 3, ..."""
    return int(value).bit_length()


def _bin_label(number: int) -> str:
    low, high = (0, 0) if number == 0 else (1 << (number - 1), (1 << number) - 1)
    return str(low) if low == high else f"{low}-{high}"


def _single_value(by_threads: dict[int, dict[int, int]]) -> int | None:
    """The one value every pooled histogram holds, or None if they hold more (or none)."""
    values = {value for counts in by_threads.values() for value in counts}
    return values.pop() if len(values) == 1 else None


def _legend_outside(figure, handles) -> None:
    """One legend for the whole figure, right of the panels, where it covers no data."""
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")


def _panel_grid(plt: ModuleType, count: int, *, width: float, height: float,
                columns: int = 3, **options):
    """A figure with ``count`` panels, at most ``columns`` a row; returns it and the panels."""
    columns = min(columns, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns + 1.8, height * rows),
                                squeeze=False, layout="constrained", **options)
    panels = list(axes.flat)
    for unused in panels[count:]:
        unused.set_visible(False)
    return figure, panels[:count]
