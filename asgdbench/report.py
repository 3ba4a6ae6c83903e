"""From finished runs to the comparison table: one row per (strategy, threads, lr).

Repeats of a cell differ only in their seed. Time to target and test accuracy
are statistics over the *converged* repeats only, and the row says how many
those are (``converged`` of ``runs``): a run that timed out or diverged is
never averaged in as if it had a time. Throughput, staleness, CAS and memory
figures describe the execution, so they pool every repeat.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from tabulate import tabulate

from asgdbench.result import RunResult
from asgdbench.telemetry import histogram_summary

SEQ, LOCK = "seq", "lock"  # the baselines every row is compared with
MISSING = "—"
NOT_CONVERGED = "not converged"

# Fields that set the problem rather than the strategy: they go into the
# caption when every row shares them, and become columns when they differ.
_CONTEXT = (("workload", "workload"), ("batch_size", "batch size"), ("target_loss", "target loss"))


@dataclass(frozen=True)
class Row:
    """The aggregate of one grid cell's repeats; raw numbers (None: no value)."""

    workload: str
    batch_size: int
    target_loss: float | None
    algorithm: str
    threads: int
    lr: float
    runs: int
    converged: int
    diverged: int
    time_to_target_median: float | None
    time_to_target_min: float | None
    time_to_target_max: float | None
    speedup_vs_seq: float | None
    speedup_vs_lock: float | None
    updates_per_s: float
    staleness_mean: float | None
    staleness_p99: int | None
    cas_failure_rate: float | None
    dropped_fraction: float | None
    peak_param_bytes: int
    test_accuracy: float | None

    @property
    def context(self) -> tuple:
        return tuple(getattr(self, name) for name, _ in _CONTEXT)


def summarize(results: Iterable[RunResult]) -> list[Row]:
    """Aggregate runs into table rows, in the order strategies first appear."""
    cells: dict[tuple, list[RunResult]] = {}
    for result in results:
        cells.setdefault(_cell_key(result), []).append(result)
    rows = [_aggregate(runs) for runs in cells.values()]
    medians = {(row.context, row.algorithm, row.threads, row.lr): row.time_to_target_median
               for row in rows}
    rows = [_with_speedups(row, medians) for row in rows]
    contexts = _first_seen(row.context for row in rows)
    algorithms = _first_seen(row.algorithm for row in rows)
    return sorted(rows, key=lambda row: (contexts[row.context], algorithms[row.algorithm],
                                         row.threads, row.lr))


def render(rows: Sequence[Row]) -> str:
    """The table as GitHub Markdown (readable in a terminal), with its caption and legend."""
    if not rows:
        return "No finished runs."
    varying = [(name, title) for name, title in _CONTEXT
               if len({getattr(row, name) for row in rows}) > 1]
    constant = [(name, title) for name, title in _CONTEXT if (name, title) not in varying]
    caption = ", ".join(f"{title} {_context_value(getattr(rows[0], name))}"
                        for name, title in constant)
    headers = [title for _, title in varying] + [
        "strategy", "threads", "lr", "time to target [s]", "speedup vs seq", "vs lock",
        "converged", "updates/s", "staleness mean", "staleness p99", "CAS failures", "dropped",
        "peak params", "test accuracy"]
    body = [[_context_value(getattr(row, name)) for name, _ in varying] + _cells(row)
            for row in rows]
    text_columns = len(varying) + 1  # the context columns and the strategy
    align = ["left"] * text_columns + ["right"] * (len(headers) - text_columns)
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True,
                     colalign=align)
    legend = ("Time to target: median (min-max) over converged runs only; test accuracy: median "
              "over converged runs; speedup: baseline median time / this median, same lr "
              "(seq at 1 thread, lock at the same thread count); other columns pool all runs.")
    return f"{caption}\n\n{table}\n\n{legend}" if caption else f"{table}\n\n{legend}"


def describe_run(result: RunResult) -> str:
    """A short report of one run, for ``asgdbench run``."""
    config = result.config
    title = (f"{config.workload}  {config.algorithm}  threads={config.threads}  "
             f"lr={config.lr:g}  batch={config.batch_size}  seed={config.seed}")
    if result.converged:
        to_target = f"{_number(result.time_to_target_s)} s ({result.steps_to_target:,} updates)"
    else:
        to_target = f"{NOT_CONVERGED} (target loss {_context_value(config.target_loss)})"
    staleness = result.staleness
    lines = [
        ("status", f"{result.status} after {_number(result.wall_s)} s"),
        ("time to target", to_target),
        ("updates/s", f"{result.updates_per_s:,.0f} ({result.updates_applied:,} updates)"),
        ("staleness", MISSING if staleness["mean"] is None else
         f"mean {staleness['mean']:.2f}, p99 {staleness['p99']}, max {staleness['max']}"),
        ("CAS failures", MISSING if result.cas is None else
         f"{_percent(result.cas['failure_rate'])} of {result.cas['total_attempts']:,} attempts"),
        ("dropped", _percent(_ratio(result.gradients_dropped, result.gradients_computed))),
        ("peak params", f"{_bytes(result.peak_param_bytes)} "
                        f"({result.peak_param_vectors} vectors)"),
        ("final loss", _optional(result.final_loss, "{:.4g}")),
        ("test accuracy", _optional(result.test_accuracy, "{:.3f}")),
    ]
    # whatever else the workload measured (the probe: torn reads) and the strategy reported
    extras = {k: v for k, v in result.evaluation.items() if k not in ("test_loss", "test_accuracy")}
    lines += [(name.replace("_", " "), str(value))
              for name, value in {**extras, **result.strategy_state}.items()]
    return f"{title}\n{tabulate(lines, tablefmt='plain', disable_numparse=True)}"


# -- aggregation ----------------------------------------------------------------

def _cell_key(result: RunResult) -> tuple:
    config = result.config
    return (config.workload, config.batch_size, config.target_loss, config.algorithm,
            config.threads, float(config.lr))


def _aggregate(runs: list[RunResult]) -> Row:
    config = runs[0].config
    converged = [run for run in runs if run.converged]
    times = [run.time_to_target_s for run in converged]
    accuracies = [run.test_accuracy for run in converged if run.test_accuracy is not None]
    staleness = _pooled_summary(run.staleness for run in runs)
    cas_runs = [run.cas for run in runs if run.cas is not None]
    cas_attempts = sum(cas["total_attempts"] for cas in cas_runs)
    return Row(
        workload=config.workload,
        batch_size=config.batch_size,
        target_loss=config.target_loss,
        algorithm=config.algorithm,
        threads=config.threads,
        lr=float(config.lr),
        runs=len(runs),
        converged=len(converged),
        diverged=sum(run.status == "diverged" for run in runs),
        time_to_target_median=statistics.median(times) if times else None,
        time_to_target_min=min(times) if times else None,
        time_to_target_max=max(times) if times else None,
        speedup_vs_seq=None,
        speedup_vs_lock=None,
        updates_per_s=statistics.median(run.updates_per_s for run in runs),
        staleness_mean=staleness["mean"],
        staleness_p99=staleness["p99"],
        cas_failure_rate=(_ratio(sum(cas["failures"] for cas in cas_runs), cas_attempts)
                          if cas_runs else None),
        dropped_fraction=_ratio(sum(run.gradients_dropped for run in runs),
                                sum(run.gradients_computed for run in runs)),
        peak_param_bytes=max(run.peak_param_bytes for run in runs),
        test_accuracy=statistics.median(accuracies) if accuracies else None,
    )


def pooled_histogram(summaries: Iterable[dict]) -> dict[int, int]:
    """Several runs' sparse histograms (``{"value": count}``) added together."""
    pooled: dict[int, int] = {}
    for summary in summaries:
        for value, count in summary["histogram"].items():
            pooled[int(value)] = pooled.get(int(value), 0) + count
    return pooled


def _pooled_summary(summaries: Iterable[dict]) -> dict:
    """Mean and percentiles of several runs' histograms added together."""
    pooled = pooled_histogram(summaries)
    dense = np.zeros(max(pooled, default=-1) + 1, dtype=np.int64)
    for value, count in pooled.items():
        dense[value] = count
    return histogram_summary(dense)


def _with_speedups(row: Row, medians: dict[tuple, float | None]) -> Row:
    def speedup(baseline: float | None) -> float | None:
        own = row.time_to_target_median
        return baseline / own if baseline is not None and own else None

    return replace(
        row,
        speedup_vs_seq=speedup(medians.get((row.context, SEQ, 1, row.lr))),
        speedup_vs_lock=speedup(medians.get((row.context, LOCK, row.threads, row.lr))),
    )


def _first_seen(values: Iterable) -> dict:
    order: dict = {}
    for value in values:
        order.setdefault(value, len(order))
    return order


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- formatting -----------------------------------------------------------------

def _cells(row: Row) -> list[str]:
    return [
        row.algorithm,
        str(row.threads),
        f"{row.lr:g}",
        _time_to_target(row),
        _optional(row.speedup_vs_seq, "{:.2f}x"),
        _optional(row.speedup_vs_lock, "{:.2f}x"),
        f"{row.converged}/{row.runs}" + (f", {row.diverged} diverged" if row.diverged else ""),
        f"{row.updates_per_s:,.0f}",
        _optional(row.staleness_mean, "{:.2f}"),
        _optional(row.staleness_p99, "{}"),
        _percent(row.cas_failure_rate),
        _percent(row.dropped_fraction),
        _bytes(row.peak_param_bytes),
        _optional(row.test_accuracy, "{:.3f}"),
    ]


def _time_to_target(row: Row) -> str:
    if row.time_to_target_median is None:
        return NOT_CONVERGED
    median = _number(row.time_to_target_median)
    if row.converged == 1:
        return median
    return f"{median} ({_number(row.time_to_target_min)}-{_number(row.time_to_target_max)})"


def _number(value: float) -> str:
    """Three significant digits, trailing zeros kept so that a column lines up."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _optional(value: float | None, template: str) -> str:
    return MISSING if value is None else template.format(value)


def _percent(value: float | None) -> str:
    return _optional(None if value is None else 100 * value, "{:.1f}%")


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _context_value(value: float | str | None) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
