"""The figure of each claim, one per claim and workload (matplotlib, as in :mod:`plots`).

Same conventions as :mod:`~asgdbench.study.plots`: log axes where values span
a decade or more, a run that never reached ε drawn as a cross at its time
limit instead of stretching an axis, and a panel with nothing to show left
out (a figure with no panel at all is None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from asgdbench.engine.choice import Choice
from asgdbench.engine.run_result import RunResult
from asgdbench.study import plots
from asgdbench.study.claims import (
    BASELINES,
    HOGWILD,
    LEASHED,
    LEASHED_TP,
    LOCK,
    SPARSE_HOGWILD,
    SPARSE_LOCK,
    Context,
    dropped_share,
    failures_per_update,
    is_run_of,
    runs_of,
    time_to_epsilon,
)

STRATEGY_COLOURS = {LOCK: "C0", HOGWILD: "C1", LEASHED: "C2", LEASHED_TP[0]: "C3",
                    LEASHED_TP[1]: "C4", SPARSE_LOCK: "C0", SPARSE_HOGWILD: "C1"}


def claim_figure(plt: ModuleType, number: int, results: Sequence[RunResult], workload: str,
                 context: Context):
    """The figure of claim ``number`` on ``workload``, or None when no panel has data."""
    runs = [r for r in results if r.config.workload == workload and r.status != "error"]
    if workload in context.missing:
        return None
    draw = {1: _speed, 2: _stability, 3: _memory, 4: _contention, 5: _staleness,
            6: _regime}[number]
    return draw(plt, runs, workload, context)


def _colour(strategy: Choice) -> str:
    return STRATEGY_COLOURS.get(strategy, "C7")


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) >= 10 * min(positive)


def _regime(plt, runs, workload, context):
    """Claim 6: claim 1's figure for the sparse regime's strategies."""
    return _speed(plt, runs, workload, context, (SPARSE_LOCK, SPARSE_HOGWILD, LEASHED))


def _speed(plt, runs, workload, context, strategies=(LOCK, HOGWILD, LEASHED)):
    lr = context.base_lr[workload]
    series = {label: sorted({r.config.threads for r in runs if is_run_of(r, label)
                             and math.isclose(r.config.lr, lr)})
              for label in strategies}
    series = {label: counts for label, counts in series.items() if counts}
    if not series:
        return None
    figure, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    times_seen, censored = [], False
    for index, (label, counts) in enumerate(series.items()):
        dodge = 2 ** (0.05 * (index - (len(series) - 1) / 2))
        medians, lows, highs = [], [], []
        for threads in counts:
            cell = runs_of(runs, workload, label, threads, lr)
            times = np.array([time_to_epsilon(r) for r in cell])
            medians.append(np.median(times))
            lows.append(np.percentile(times, 25))
            highs.append(np.percentile(times, 75))
            for run, value in zip(cell, times, strict=True):
                ax.plot(threads * dodge, value, marker="o" if run.converged else "x",
                        color=_colour(label), alpha=0.45, markersize=4 if run.converged else 7,
                        linestyle="none")
                censored |= not run.converged
            times_seen.extend(times)
        x = [threads * dodge for threads in counts]
        ax.errorbar(x, medians, yerr=[np.subtract(medians, lows), np.subtract(highs, medians)],
                    marker="s", capsize=4, color=_colour(label), label=f"{label} (median, IQR)")
    counts = sorted({t for c in series.values() for t in c})
    if len(counts) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(t) for t in counts])
    ax.minorticks_off()
    if _spans_decades(times_seen):
        ax.set_yscale("log")
    _shade_time_shared(ax, counts, context.cores)
    ax.set_xlabel(f"threads ({context.cores} cores)")
    ax.set_ylabel("time to ε [s]")
    ax.set_title(workload)
    handles = ax.get_legend_handles_labels()[0]
    if censored:
        handles.append(plt.Line2D([], [], color="black", marker="x", linestyle="none",
                                  label="did not reach ε (at its time limit)"))
    plots._legend_outside(figure, handles)
    return figure


def _stability(plt, runs, workload, context):
    candidates = [r.config.threads for r in runs if is_run_of(r, LEASHED)
                  and r.config.threads <= context.cores]
    if not candidates:
        return None
    threads = max(candidates)
    lrs = sorted({r.config.lr for r in runs if is_run_of(r, LEASHED)
                  and r.config.threads == threads})
    any_converged = any(r.converged for r in runs if r.config.threads == threads)
    figure, axes = plt.subplots(1, 2 if any_converged else 1, figsize=(
        10 if any_converged else 6.5, 3.8), layout="constrained", squeeze=False)
    rate_ax, time_ax = axes[0][0], (axes[0][1] if any_converged else None)
    times_seen = []
    for index, label in enumerate((LOCK, HOGWILD, LEASHED)):
        rates, dodge = [], 2 ** (0.06 * (index - 1))
        for lr in lrs:
            cell = runs_of(runs, workload, label, threads, lr)
            rates.append(sum(r.converged for r in cell) / len(cell) if cell else math.nan)
            times = [r.time_to_target_s for r in cell if r.converged]
            if times:
                time_ax.plot([lr * dodge] * len(times), times, marker="o", linestyle="none",
                             color=_colour(label), alpha=0.6, markersize=4)
            times_seen += times
        rate_ax.plot([lr * dodge for lr in lrs], rates, marker="o", color=_colour(label),
                     label=label)
    for ax in [ax for ax in (rate_ax, time_ax) if ax is not None]:
        if len(lrs) > 1:
            ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()
        ax.set_xlabel(f"step size ({threads} threads)")
    rate_ax.set_ylim(-0.05, 1.05)
    rate_ax.set_ylabel("share of runs that reached ε")
    if time_ax is not None:
        time_ax.set_ylabel("time to ε [s] (converged runs)")
        if _spans_decades(times_seen):
            time_ax.set_yscale("log")
    figure.suptitle(workload)
    plots._legend_outside(figure, rate_ax.get_legend_handles_labels()[0])
    return figure


def _memory(plt, runs, workload, context):
    lr = context.base_lr[workload]
    labels = [label for label in (LOCK, HOGWILD, LEASHED)
              if any(is_run_of(r, label) and r.live_param_vectors for r in runs)]
    if not labels:
        return None
    counts = sorted({r.config.threads for r in runs if any(is_run_of(r, strategy) for strategy in labels)})
    top = max(counts)
    figure, (trace_ax, mean_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for label in labels:
        cell = sorted(runs_of(runs, workload, label, top, lr), key=lambda r: r.config.seed)
        if cell and cell[0].live_param_vectors.get("trace"):
            trace = np.array(cell[0].live_param_vectors["trace"], dtype=float)
            trace_ax.step(trace[:, 0], trace[:, 1], where="post", color=_colour(label),
                          label=label)
        present = [t for t in counts if runs_of(runs, workload, label, t, lr)]
        means = [np.median([r.live_param_vectors.get("mean", r.peak_param_vectors)
                            for r in runs_of(runs, workload, label, t, lr)]) for t in present]
        mean_ax.plot(present, means, marker="o", color=_colour(label), label=label)
    trace_ax.set_xlabel(f"wall time [s] ({top} threads, first seed)")
    trace_ax.set_ylabel("live parameter vectors")
    if len(counts) > 1:
        mean_ax.set_xscale("log", base=2)
    mean_ax.set_xticks(counts, [str(t) for t in counts])
    mean_ax.minorticks_off()
    _shade_time_shared(mean_ax, counts, context.cores)
    mean_ax.set_xlabel(f"threads ({context.cores} cores)")
    mean_ax.set_ylabel("time-averaged live vectors")
    figure.suptitle(workload)
    plots._legend_outside(figure, mean_ax.get_legend_handles_labels()[0])
    return figure


def _shade_time_shared(ax, counts: Sequence[int], cores: int) -> None:
    beyond = [t for t in counts if t > cores]
    if beyond:
        ax.axvspan(max([t for t in counts if t <= cores] or [cores]) * 1.2, max(beyond) * 1.3,
                   color="grey", alpha=0.12, label="more threads than cores")


def _contention(plt, runs, workload, context):
    lr = context.base_lr[workload]
    present = [label for label in LEASHED_TP if any(is_run_of(r, label) for r in runs)]
    if not present:
        return None
    counts = sorted({r.config.threads for r in runs if any(is_run_of(r, strategy) for strategy in present)})
    panels = [("failed CAS per update", failures_per_update),
              ("dropped share of gradients", dropped_share)]
    drawn = []
    for title, measure in panels:
        lines = {}
        for label in present:
            points = [(t, np.median([measure(r) for r in runs_of(runs, workload, label, t, lr)]))
                      for t in counts if runs_of(runs, workload, label, t, lr)]
            if points:
                lines[label] = points
        if any(value > 0 for points in lines.values() for _, value in points):
            drawn.append((title, lines))
    if not drawn:
        return None
    figure, axes = plt.subplots(1, len(drawn), figsize=(5 * len(drawn) + 1.5, 3.8),
                                layout="constrained", squeeze=False)
    for ax, (title, lines) in zip(axes[0], drawn, strict=True):
        for label, points in lines.items():
            ax.plot([t for t, _ in points], [v for _, v in points], marker="o",
                    color=_colour(label), label=label)
        if len(counts) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(t) for t in counts])
        ax.minorticks_off()
        values = [v for points in lines.values() for _, v in points]
        if _spans_decades(values) and min(values) > 0:
            ax.set_yscale("log")
        _shade_time_shared(ax, counts, context.cores)
        ax.set_xlabel(f"threads ({context.cores} cores)")
        ax.set_ylabel(title + " (median)")
    figure.suptitle(workload)
    plots._legend_outside(figure, axes[0][0].get_legend_handles_labels()[0])
    return figure


def _staleness(plt, runs, workload, context):
    lr = context.base_lr[workload]
    shown = [r for r in runs if any(is_run_of(r, strategy) for strategy in (*BASELINES, LEASHED))
             and math.isclose(r.config.lr, lr) and r.config.threads <= max(context.cores, 1)
             and r.staleness.get("count")]
    if not shown:
        return None
    figure = plots._histograms(plt, shown, lambda r: r.staleness,
                               "staleness (updates in between)")
    return figure
