"""From finished runs to the comparison table: one row per (strategy, threads, lr).

Repeats of a cell differ only in their seed. Time to target and test accuracy
are statistics over the *converged* repeats only, and the row says how many
those are (``converged`` of ``runs``): a run that timed out or diverged is
never averaged in as if it had a time. Runs that stopped at their time or
update budget report their final loss, test loss and test accuracy instead,
so that a fixed-budget study has a metric. Throughput, staleness, CAS and
memory figures describe the execution, so they pool every repeat.

The rendered table shows a selection of :data:`COLUMNS` that fits 120
characters, and a footer that explains each column shown and notes what the
rows cannot say by themselves (threads beyond the cores, mixed BLAS kernels).
:func:`render_comparison` sets two result folders side by side.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from tabulate import tabulate

from asgdbench.engine import blas
from asgdbench.engine.choice import CONSTANT, Choice
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.engine.statistics import histogram_summary
from asgdbench.errors import UserError
from asgdbench.plugins.step_rules import DEFAULT_STEP

SEQ, LOCK = Choice("seq"), Choice("lock")
"""The baselines every row is compared with (at the constant step: seq at 1 thread, lock at the
row's thread count), found by their typed fields, never by a label's text."""
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
    strategy: str
    """The run label (:func:`asgdbench.engine.choice.run_label`): strategy, then step rule if
    not constant, ``lock+inverse``."""
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
    stopped: int = 0
    """Runs that ended at their time or update budget (neither converged nor diverged)."""
    final_loss: float | None = None
    final_loss_min: float | None = None
    final_loss_max: float | None = None
    final_test_loss: float | None = None
    final_test_accuracy: float | None = None
    """Medians over the ``stopped`` runs, at the point their budget ran out."""
    seq_overlaps: bool = False
    lock_overlaps: bool = False
    """Whether this cell's min-max time interval overlaps its baseline's: the speedup is noise."""
    staleness_p999: int | None = None
    cores: int | None = None
    """The fewest cores any of the runs had (its CPU affinity)."""
    blas: str = ""
    """The BLAS libraries and kernels the runs used; several, separated by ``; ``, if they differ."""
    machine: str = ""
    """The machine description (CPU model, cores) of the runs; several, ``; ``-separated, if they differ."""
    step_rule: str = DEFAULT_STEP
    """The step rule's spec; ``strategy`` already shows it (``lock+inverse``) unless constant."""
    step_factor_mean: float | None = None
    """Mean step of the applied updates over lr, all runs pooled (None: not recorded)."""

    @property
    def context(self) -> tuple:
        return tuple(getattr(self, name) for name, _ in _CONTEXT)


@dataclass(frozen=True)
class Column:
    """One selectable column of the table: its ``--columns`` name, header, cell and meaning."""

    name: str
    header: str
    cell: Callable[[Row], str]
    meaning: str


def summarize(results: Iterable[RunResult]) -> list[Row]:
    """Aggregate runs into table rows, in the order strategies first appear."""
    cells: dict[tuple, list[RunResult]] = {}
    for result in results:
        cells.setdefault(_cell_key(result.config), []).append(result)
    by_cell = {key: _aggregate(runs) for key, runs in cells.items()}
    rows = [_with_speedups(key, row, by_cell) for key, row in by_cell.items()]
    contexts = _first_seen(row.context for row in rows)
    strategies = _first_seen(row.strategy for row in rows)
    return sorted(rows, key=lambda row: (contexts[row.context], strategies[row.strategy],
                                         row.threads, row.lr))


def column_names() -> list[str]:
    """Every column ``--columns`` accepts."""
    return [column.name for column in COLUMNS]


def default_columns(rows: Sequence[Row]) -> list[str]:
    """The columns that fit 120 characters and carry this table's metric.

    With a target: time to target and speedups. Without one, or where runs
    stopped at their budget: the training loss, test loss and test accuracy
    at the budget, so that a fixed-budget study has a metric.
    """
    targeted = any(row.target_loss is not None for row in rows)
    stopped = any(row.stopped for row in rows)
    # with step rules in the table, the mean step they took replaces the CAS column
    rules = any(row.step_rule != DEFAULT_STEP for row in rows)
    execution = ["step-factor"] if rules else ["cas"]
    if targeted and stopped:  # both metrics: the execution figures make way (see --wide)
        return ["time", "vs-seq", "vs-lock", "converged", "final-loss", "final-test-acc"]
    if targeted:
        return ["time", "vs-seq", "vs-lock", "converged", "updates", *execution, "test-acc"]
    return ["runs", "final-loss", "final-test-loss", "final-test-acc", "updates", *execution]


def render(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """The table as GitHub Markdown (readable in a terminal), with its caption and footer.

    ``columns`` are names from :func:`column_names` (default: :func:`default_columns`).
    The footer explains every column shown and its unit, then notes what the
    reader must know: threads beyond the cores, cells that mixed BLAS kernels.
    """
    if not rows:
        return "No finished runs."
    chosen = [_column(name) for name in (columns or default_columns(rows))]
    context = list(_CONTEXT) + [("lr", "lr")]
    varying = [(name, title) for name, title in context
               if len({getattr(row, name) for row in rows}) > 1]
    constant = [(name, title) for name, title in context if (name, title) not in varying]
    caption = ", ".join(f"{title} {_context_value(getattr(rows[0], name))}"
                        for name, title in constant)
    leading = [(name, title) for name, title in varying if name != "lr"]
    shows_lr = ("lr", "lr") in varying
    headers = ([title for _, title in leading] + ["strategy", "threads"]
               + (["lr"] if shows_lr else []) + [column.header for column in chosen])
    body = [[_context_value(getattr(row, name)) for name, _ in leading]
            + [row.strategy, str(row.threads)] + ([f"{row.lr:g}"] if shows_lr else [])
            + [column.cell(row) for column in chosen]
            for row in rows]
    text_columns = len(leading) + 1  # the context columns and the strategy
    align = ["left"] * text_columns + ["right"] * (len(headers) - text_columns)
    table = markdown_table(headers, body, align)
    footer = "\n".join([*(f"{column.header}: {column.meaning}" for column in chosen),
                        *_notes(rows)])
    return f"{caption}\n\n{table}\n\n{footer}" if caption else f"{table}\n\n{footer}"


def markdown_table(headers: Sequence[str], body: Sequence[Sequence[str]],
                   align: Sequence[str]) -> str:
    """A GitHub Markdown table padded to line up in a terminal, no wider than its widest cells."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) if side == "left" else cell.rjust(width)
                  for cell, width, side in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (width + 1) + ":") if side == "right" else "-" * (width + 2)
                          for width, side in zip(widths, align)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in body)])


def _notes(rows: Sequence[Row]) -> list[str]:
    """Lines a reader needs besides the column meanings."""
    notes = []
    cores = min((row.cores for row in rows if row.cores), default=None)
    over = sorted({row.threads for row in rows if cores and row.threads > cores})
    if over:
        notes.append(f"Note: {_and(map(str, over))} threads exceed the {cores} cores the runs "
                     f"had; those rows time-share cores, so they show synchronization "
                     f"overhead, not scaling.")
    blas, blas_mixed = _provenance_notes(rows, "blas", "BLAS", "BLAS")
    machine, machine_mixed = _provenance_notes(rows, "machine", "Machine", "machines")
    return notes + blas_mixed + machine_mixed + machine + blas


def _provenance_notes(rows: Sequence[Row], field: str, title: str, plural: str
                      ) -> tuple[list[str], list[str]]:
    """(what the rows ran on, warnings) for one provenance ``field`` of the rows (BLAS, machine).

    A row whose runs differ in it (its value joins them with "; ") is warned
    about; otherwise one value is named, and several are warned about.
    """
    mixed = [row for row in rows if "; " in getattr(row, field)]
    warnings = [f"Warning: {row.strategy} at {row.threads} threads mixes runs on different "
                f"{plural} ({getattr(row, field)}); its times are not comparable."
                for row in mixed]
    values = sorted({getattr(row, field) for row in rows if getattr(row, field)})
    if mixed or not values:
        return [], warnings
    if len(values) == 1:
        return [f"{title}: {values[0]}."], warnings
    return [f"Warning: rows ran on different {plural} ({'; '.join(values)}); ratios between "
            f"them are not comparable."], warnings


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def render_comparison(before: Sequence[Row], after: Sequence[Row]) -> str:
    """Two result folders cell by cell, like ``asv compare``: medians, intervals and their ratio.

    Cells match on workload, batch size, target, strategy, threads and step
    size. The metric is the time to target; cells that did not converge in
    both folders compare their final training loss at the budget instead.
    """
    if not before and not after:
        return "No finished runs."
    old, new = ({_comparison_key(row): row for row in rows} for rows in (before, after))
    cells = list(dict.fromkeys([*old, *new]))
    varying = [(index, title) for index, (_, title) in enumerate(_CONTEXT)
               if len({cell[0][index] for cell in cells}) > 1]
    several_lrs = len({cell[3] for cell in cells}) > 1
    headers = ([title for _, title in varying] + ["strategy", "threads"]
               + (["lr"] if several_lrs else []) + ["metric", "before", "after", "ratio",
                                                    "converged"])
    body = []
    for cell in cells:
        a, b = old.get(cell), new.get(cell)
        metric, first, second, ratio = _compared(a, b)
        body.append([_context_value(cell[0][index]) for index, _ in varying]
                    + [cell[1], str(cell[2])] + ([f"{cell[3]:g}"] if several_lrs else [])
                    + [metric, first, second, ratio,
                       f"{_converged_cell(a) if a else MISSING} -> "
                       f"{_converged_cell(b) if b else MISSING}"])
    align = (["left"] * (len(varying) + 1) + ["right"] * (2 if several_lrs else 1)
             + ["left"] + ["right"] * 4)
    footer = ("time: time to target [s], median (min-max) over converged runs; loss: smoothed "
              "training loss at the budget, median (min-max) over runs that stopped there.\n"
              "ratio: after / before; + larger (slower, or a higher loss), - smaller, ~ the "
              "min-max intervals overlap: no change beyond run-to-run noise; no mark: a single run "
              "on one side, so the noise is unknown.")
    return f"{markdown_table(headers, body, align)}\n\n{footer}"


def _comparison_key(row: Row) -> tuple:
    return (row.context, row.strategy, row.threads, row.lr)


def _compared(before: Row | None, after: Row | None) -> tuple[str, str, str, str]:
    """The metric both cells have, their values and the ratio (after / before) with its mark."""
    def time(row: Row) -> tuple[float, float, float, int] | None:
        if row is None or row.time_to_target_median is None:
            return None
        return (row.time_to_target_median, row.time_to_target_min, row.time_to_target_max,
                row.converged)

    def loss(row: Row) -> tuple[float, float, float, int] | None:
        if row is None or row.final_loss is None:
            return None
        return row.final_loss, row.final_loss_min, row.final_loss_max, row.stopped

    metric, values = "time", (time(before), time(after))
    losses = (loss(before), loss(after))
    # the final loss where both cells stopped at a budget, or where no side has a time at
    # all (a fixed-budget cell found in one folder only)
    if None in values and any(losses) and (all(losses) or not any(values)):
        metric, values = "loss", losses
    shown = [MISSING if value is None else _interval(*value[:3]) for value in values]
    if None in values:
        return metric, *shown, MISSING
    (old, old_min, old_max, old_runs), (new, new_min, new_max, new_runs) = values
    ratio = new / old
    if min(old_runs, new_runs) < 2:
        return metric, *shown, f"{ratio:.2f}x"  # one run: no interval to judge noise by
    mark = "~" if old_min <= new_max and new_min <= old_max else ("+" if ratio > 1 else "-")
    return metric, *shown, f"{mark} {ratio:.2f}x"


def _interval(median: float, low: float, high: float) -> str:
    if low == high:
        return _number(median)
    return f"{_number(median)} ({_number(low)}-{_number(high)})"


def describe_run(result: RunResult) -> str:
    """A short report of one run, for ``asgdbench run``."""
    config = result.config
    title = (f"{config.workload}  {config.label}  threads={config.threads}  "
             f"lr={config.lr:g}  batch={config.batch_size}  seed={config.seed}")
    if result.converged:
        to_target = (f"{_number(result.time_to_target_s)} s ({result.steps_to_target:,} updates), "
                     f"when the smoothed loss first reached {_context_value(config.target_loss)}")
    else:
        to_target = f"{NOT_CONVERGED} (target loss {_context_value(config.target_loss)})"
    diverged = result.status == "diverged"
    status = f"{result.status} after {_number(result.wall_s)} s"
    if result.overrun_s is not None:
        status += f" ({_number(result.overrun_s)} s past the time limit, for the last step to end)"
    lines = [
        ("status", status),
        *([("error", result.error)] if result.error else []),
        ("time to target", to_target),
        ("updates/s", f"{result.updates_per_s:,.0f} ({result.updates_applied:,} updates)"),
        ("staleness", _staleness_shape(result.staleness)),
        ("step", _step_shape(result)),
        ("CAS failures", MISSING if result.cas is None else
         f"{_percent(result.cas['failure_rate'])} of {result.cas['total_attempts']:,} attempts"),
        ("dropped", _percent(_ratio(result.gradients_dropped, result.gradients_computed))),
        ("peak params", f"{_bytes(result.peak_param_bytes)} ({result.peak_param_vectors} "
                        f"vector{'s' if result.peak_param_vectors != 1 else ''})"),
        ("final loss", _final_loss(result)),
        ("test accuracy", "meaningless: the run diverged" if diverged else
         _optional(result.test_accuracy, "{:.3f}")),
        ("BLAS", _blas_label(result.environment) or MISSING),
    ]
    # whatever else the workload measured (the probe: torn reads) and the strategy reported
    extras = {k: v for k, v in result.evaluation.items() if k not in ("test_loss", "test_accuracy")}
    lines += [(name.replace("_", " "), str(value))
              for name, value in {**extras, **result.strategy_state}.items()]
    return f"{title}\n{tabulate(lines, tablefmt='plain', disable_numparse=True)}"


def _final_loss(result: RunResult) -> str:
    """The smoothed loss at the end, said to be the one the target is judged on."""
    loss = result.final_loss
    if loss is None or not math.isfinite(loss):
        return "not finite (the run diverged)" if result.status == "diverged" else MISSING
    what = "smoothed: the mean of the last minibatch losses, the loss the target is judged on"
    if result.converged:
        what += "; it kept moving after reaching the target"
    return f"{loss:.4g} ({what})"


def _step_shape(result: RunResult) -> str:
    """The step rule and what it did: the mean step and the range of step / lr."""
    steps = result.step_rule
    if not steps or steps.get("mean_step") is None:
        step = result.config.step.label
        return f"{step} (no update applied)" if steps else step
    return (f"{result.config.step}: mean {steps['mean_step']:.4g} = {steps['mean_factor']:.3f} "
            f"x lr, factor {steps['factor_min']:.3g} to {steps['factor_max']:.3g}")


def _staleness_shape(staleness: dict) -> str:
    """Where the staleness histogram's mass is: the share at 0 and its tail."""
    if staleness.get("mean") is None:
        return MISSING
    at_zero = staleness["histogram"].get("0", 0) / staleness["count"]
    tail = f", p99.9 {staleness['p999']}" if staleness.get("p999") is not None else ""
    return (f"{100 * at_zero:.1f}% at 0, mean {staleness['mean']:.2f}, p99 {staleness['p99']}"
            f"{tail}, max {staleness['max']} (updates by others between read and update)")


# -- aggregation ----------------------------------------------------------------

def _cell_key(config: RunConfig) -> tuple:
    """A table cell's identity, by typed fields: the problem (workload, batch size, target),
    the strategy and step rule, threads and lr (see :func:`_with_speedups`)."""
    return (config.workload, config.batch_size, config.target_loss, config.strategy,
            config.step, config.threads, float(config.lr))


def _aggregate(runs: list[RunResult]) -> Row:
    config = runs[0].config
    converged = [run for run in runs if run.converged]
    stopped = [run for run in runs if run.status in ("timeout", "budget")]
    times = [run.time_to_target_s for run in converged]
    accuracies = [run.test_accuracy for run in converged if run.test_accuracy is not None]
    staleness = _pooled_summary(run.staleness for run in runs)
    cas_runs = [run.cas for run in runs if run.cas is not None]
    cas_attempts = sum(cas["total_attempts"] for cas in cas_runs)
    return Row(
        workload=config.workload,
        batch_size=config.batch_size,
        target_loss=config.target_loss,
        strategy=config.label,
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
        stopped=len(stopped),
        final_loss=_median(run.final_loss for run in stopped),
        final_loss_min=_extreme(min, (run.final_loss for run in stopped)),
        final_loss_max=_extreme(max, (run.final_loss for run in stopped)),
        final_test_loss=_median(run.test_loss for run in stopped),
        final_test_accuracy=_median(run.test_accuracy for run in stopped),
        staleness_p999=staleness.get("p999"),
        step_rule=config.step.label,
        step_factor_mean=_step_factor_mean(runs),
        cores=min((_cores(run.environment) for run in runs if _cores(run.environment)),
                  default=None),
        blas="; ".join(sorted({_blas_label(run.environment) for run in runs} - {""})),
        machine="; ".join(sorted({machine_label(run.environment) for run in runs} - {""})),
    )


def _step_factor_mean(runs: list[RunResult]) -> float | None:
    """Mean step / lr over every applied update of the runs (runs without the record: skipped)."""
    recorded = [run for run in runs if run.step_rule.get("mean_step") is not None]
    applied = sum(run.updates_applied for run in recorded)
    if not applied:
        return None
    return sum(run.step_rule["mean_factor"] * run.updates_applied for run in recorded) / applied


def _median(values: Iterable[float | None]) -> float | None:
    """Median of the finite values, None if there are none."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return statistics.median(finite) if finite else None


def _extreme(pick: Callable, values: Iterable[float | None]) -> float | None:
    """min or max of the finite values, None if there are none."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return pick(finite) if finite else None


def _cores(environment: dict) -> int | None:
    return environment.get("cpu_affinity") or environment.get("cpu_cores")


def machine_label(environment: dict) -> str:
    """A run's machine description, e.g. ``AMD EPYC 7B13, 2 cores`` ("" if unrecorded).

    The host is left out on purpose: identical nodes of a cluster are one machine here.
    """
    model, cores = environment.get("cpu_model"), _cores(environment)
    return f"{model}, {cores} cores" if model and cores else ""


def _blas_label(environment: dict) -> str:
    """The BLAS a run used, e.g. ``openblas 0.3.30 Haswell`` (libraries joined by `` + ``)."""
    return " + ".join(sorted({blas.label(library) for library in environment.get("blas", [])}))


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


def _with_speedups(key: tuple, row: Row, by_cell: dict[tuple, Row]) -> Row:
    workload, batch_size, target_loss, _, _, threads, lr = key
    problem = (workload, batch_size, target_loss)
    seq = by_cell.get((*problem, SEQ, CONSTANT, 1, lr))
    lock = by_cell.get((*problem, LOCK, CONSTANT, threads, lr))
    return replace(row, speedup_vs_seq=_speedup(row, seq), speedup_vs_lock=_speedup(row, lock),
                   seq_overlaps=_overlaps(row, seq), lock_overlaps=_overlaps(row, lock))


def _speedup(row: Row, baseline: Row | None) -> float | None:
    """The baseline's median time to target over this row's."""
    own = row.time_to_target_median
    base = None if baseline is None else baseline.time_to_target_median
    return base / own if base is not None and own else None


def _overlaps(row: Row, baseline: Row | None) -> bool:
    """Whether the two cells' min-max times overlap (never for a row against itself)."""
    if baseline is None or baseline is row or _speedup(row, baseline) is None:
        return False
    return (row.time_to_target_min <= baseline.time_to_target_max
            and baseline.time_to_target_min <= row.time_to_target_max)


def _first_seen(values: Iterable) -> dict:
    order: dict = {}
    for value in values:
        order.setdefault(value, len(order))
    return order


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- formatting -----------------------------------------------------------------

def _ratio_cell(value: float | None, noisy: bool) -> str:
    return _optional(value, "{:.2f}x") + ("~" if noisy else "")


def _converged_cell(row: Row) -> str:
    return f"{row.converged}/{row.runs}" + (f", {row.diverged} diverged" if row.diverged else "")


COLUMNS = (
    Column("time", "time to target [s]", lambda row: _time_to_target(row),
           "seconds from the start until the smoothed training loss (mean of the last "
           "minibatch losses) first reached the target; median (min-max) over converged runs."),
    Column("vs-seq", "vs seq", lambda row: _ratio_cell(row.speedup_vs_seq, row.seq_overlaps),
           "speedup over seq at 1 thread, same lr: its median time to target / this row's; "
           "~ marks a ratio whose two min-max intervals overlap, i.e. within run-to-run noise."),
    Column("vs-lock", "vs lock", lambda row: _ratio_cell(row.speedup_vs_lock, row.lock_overlaps),
           "the same against lock at the same thread count."),
    Column("converged", "converged", _converged_cell,
           "runs that reached the target / runs (diverged: the loss exceeded 10x its start)."),
    Column("runs", "runs", lambda row: f"{row.runs}" + (f", {row.diverged} diverged"
                                                       if row.diverged else ""),
           "runs in the cell (diverged: the loss exceeded 10x its start)."),
    Column("final-loss", "final loss", lambda row: _optional_number(row.final_loss),
           "runs that stopped at their time or update budget: smoothed training loss there "
           "(median)."),
    Column("final-test-loss", "final test loss",
           lambda row: _optional_number(row.final_test_loss),
           "those runs' loss on the held-out test set (median)."),
    Column("final-test-acc", "final acc",
           lambda row: _optional(row.final_test_accuracy, "{:.3f}"),
           "those runs' held-out accuracy, 0-1 (median)."),
    Column("updates", "updates/s", lambda row: f"{row.updates_per_s:,.0f}",
           "updates applied per second of wall time (median over runs)."),
    Column("staleness", "staleness", lambda row: _optional(row.staleness_mean, "{:.2f}"),
           "mean number of updates other threads applied between a thread's read and its "
           "update (all runs pooled)."),
    Column("step-factor", "step/lr", lambda row: _optional(row.step_factor_mean, "{:.3f}"),
           "mean step of the applied updates over the base lr, all runs pooled: what the "
           "step rule (the +RULE of the strategy column) made of lr; 1 for constant."),
    Column("staleness-p99", "stale p99", lambda row: _optional(row.staleness_p99, "{}"),
           "99th percentile of that staleness, in updates."),
    Column("staleness-p999", "stale p99.9", lambda row: _optional(row.staleness_p999, "{}"),
           "99.9th percentile of that staleness, in updates."),
    Column("cas", "CAS fail", lambda row: _percent(row.cas_failure_rate),
           "failed compare-and-swap attempts to publish / all attempts (CAS strategies only)."),
    Column("dropped", "dropped", lambda row: _percent(row.dropped_fraction),
           "gradients computed but never applied (Leashed-SGD gives up after tp failed CAS) / "
           "gradients computed."),
    Column("peak-params", "peak params", lambda row: _bytes(row.peak_param_bytes),
           "most parameter-vector memory alive at once (model, per-thread copies, versions), "
           "max over runs."),
    Column("test-acc", "acc", lambda row: _optional(row.test_accuracy, "{:.3f}"),
           "held-out test accuracy, 0-1, at the end of the converged runs (median)."),
)


def _column(name: str) -> Column:
    for column in COLUMNS:
        if column.name == name:
            return column
    raise UserError(f"unknown column {name!r} (valid: {', '.join(column_names())})")


def _time_to_target(row: Row) -> str:
    if row.time_to_target_median is None:
        return NOT_CONVERGED
    if row.converged == 1:
        return _number(row.time_to_target_median)
    return _interval(row.time_to_target_median, row.time_to_target_min, row.time_to_target_max)


def _number(value: float) -> str:
    """Three significant digits, trailing zeros kept so that a column lines up."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _optional_number(value: float | None) -> str:
    return MISSING if value is None else _number(value)


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
