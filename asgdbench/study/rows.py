"""From finished runs to table rows: one :data:`Row` per grid cell (strategy, threads, lr).

Repeats of a cell differ only in their seed. Time to target and test accuracy
are statistics over the *converged* repeats only, and the row says how many
those are (``converged`` of ``runs``): a run that timed out or diverged is
never averaged in as if it had a time. Runs that stopped at their time or
update budget report their final loss, test loss and test accuracy instead,
so that a fixed-budget study has a metric. The telemetry figures (throughput,
staleness, CAS, memory, ...: :data:`asgdbench.engine.telemetry.FIGURES`) describe the
execution, so they pool every repeat, each as its declaration says.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import field, make_dataclass, replace
from typing import Any

from asgdbench.engine import blas
from asgdbench.engine.choice import CONSTANT, Choice
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.engine.telemetry import FIGURES, Figure, pooled_histogram
from asgdbench.plugins.step_rules import DEFAULT_STEP

__all__ = ["LOCK", "SEQ", "SUMMARY_LAYOUT", "Row", "machine_label", "pooled_histogram",
           "row_type", "summarize"]

SEQ, LOCK = Choice("seq"), Choice("lock")
"""The baselines every row is compared with (at the constant step: seq at 1 thread, lock at the
row's thread count), found by their typed fields, never by a label's text."""

# Fields that set the problem rather than the strategy: they go into the
# caption when every row shares them, and become columns when they differ.
_CONTEXT = (("workload", "workload"), ("batch_size", "batch size"), ("target_loss", "target loss"))

_OUTCOME_FIELDS: dict[str, tuple[Any, ...]] = {
    # name: (type,) for a required field, (type, default) otherwise
    "workload": (str,),
    "batch_size": (int,),
    "target_loss": (float | None,),
    "strategy": (str,),  # the run label (choice.run_label): strategy, then a non-constant step
    "threads": (int,),
    "lr": (float,),
    "runs": (int,),
    "converged": (int,),
    "diverged": (int,),
    "time_to_target_median": (float | None,),
    "time_to_target_min": (float | None,),
    "time_to_target_max": (float | None,),
    "speedup_vs_seq": (float | None,),
    "speedup_vs_lock": (float | None,),
    "test_accuracy": (float | None,),  # median over the converged runs
    # runs that ended at their time or update budget (neither converged nor diverged)
    "stopped": (int, 0),
    # medians over the ``stopped`` runs, at the point their budget ran out
    "final_loss": (float | None, None),
    "final_loss_min": (float | None, None),
    "final_loss_max": (float | None, None),
    "final_test_loss": (float | None, None),
    "final_test_accuracy": (float | None, None),
    # whether this cell's min-max time interval overlaps its baseline's: the speedup is noise
    "seq_overlaps": (bool, False),
    "lock_overlaps": (bool, False),
    "cores": (int | None, None),  # the fewest cores any of the runs had (its CPU affinity)
    # the BLAS libraries and kernels, and the machine (CPU model, cores) of the runs;
    # several, separated by "; ", if they differ
    "blas": (str, ""),
    "machine": (str, ""),
    # the step rule's spec; ``strategy`` already shows it (``lock+inverse``) unless constant
    "step_rule": (str, DEFAULT_STEP),
}

SUMMARY_LAYOUT = (
    "workload", "batch_size", "target_loss", "strategy", "threads", "lr", "runs", "converged",
    "diverged", "time_to_target_median", "time_to_target_min", "time_to_target_max",
    "speedup_vs_seq", "speedup_vs_lock", "updates_per_s", "staleness_mean", "staleness_p99",
    "cas_failure_rate", "dropped_fraction", "peak_param_bytes", "test_accuracy", "stopped",
    "final_loss", "final_loss_min", "final_loss_max", "final_test_loss", "final_test_accuracy",
    "seq_overlaps", "lock_overlaps", "staleness_p999", "cores", "blas", "machine", "step_rule",
    "step_factor_mean",
)
"""The first columns of ``summary.csv``, where files written before the telemetry declaration
had them; every figure declared since follows, in declaration order."""


class _RowMethods:
    @property
    def context(self) -> tuple:
        return tuple(getattr(self, name) for name, _ in _CONTEXT)


def row_type(figures: Iterable[Figure]) -> type:
    """The row class: the outcome fields and a field per figure, in ``summary.csv`` order."""
    figures = {figure.name: figure for figure in figures}
    specs = {name: (name, spec[0]) if len(spec) == 1 else (name, spec[0], field(default=spec[1]))
             for name, spec in _OUTCOME_FIELDS.items()}
    specs |= {name: (name, figure.type, field(default=None)) for name, figure in figures.items()}
    unknown = set(SUMMARY_LAYOUT) - set(specs)
    assert not unknown, f"summary.csv columns neither an outcome nor a figure: {unknown}"
    order = [*SUMMARY_LAYOUT, *(name for name in specs if name not in SUMMARY_LAYOUT)]
    return make_dataclass("Row", [specs[name] for name in order], bases=(_RowMethods,),
                          frozen=True, kw_only=True,
                          namespace={"__module__": __name__, "__doc__": _ROW_DOC})


_ROW_DOC = """The aggregate of one grid cell's repeats; raw numbers (None: no value).

The outcome fields (times to target, losses at the budget, accuracy, provenance) are
declared here; a field per telemetry figure (:data:`asgdbench.engine.telemetry.FIGURES`)
follows. ``dataclasses.fields(Row)`` are the columns of ``summary.csv``."""

Row = row_type(FIGURES)


def summarize(results: Iterable[RunResult]) -> list[Row]:
    """Aggregate runs into table rows: strategies in the order the grid listed them
    (``compare --strategies``; ``grid_order["listed"]``), whatever order they ran in, and
    runs without that record after them, in the order they first appear."""
    cells: dict[tuple, list[RunResult]] = {}
    listed: dict[str, int] = {}
    for result in results:
        cells.setdefault(_cell_key(result.config), []).append(result)
        place = result.grid_order.get("listed")
        if isinstance(place, int) and not isinstance(place, bool):
            label = result.config.label
            listed[label] = min(place, listed.get(label, place))
    by_cell = {key: _aggregate(runs) for key, runs in cells.items()}
    rows = [_with_speedups(key, row, by_cell) for key, row in by_cell.items()]
    contexts = _first_seen(row.context for row in rows)
    strategies = _first_seen(row.strategy for row in rows)

    def strategy_rank(label: str) -> tuple[int, int]:
        return (0, listed[label]) if label in listed else (1, strategies[label])

    return sorted(rows, key=lambda row: (contexts[row.context], strategy_rank(row.strategy),
                                         row.threads, row.lr))


def _cell_key(config: RunConfig) -> tuple:
    """A table cell's identity, by typed fields: the problem (workload, batch size, target),
    the strategy and step rule, threads and lr (see :func:`_with_speedups`)."""
    return (config.workload, config.batch_size, config.target_loss, config.strategy,
            config.step, config.threads, float(config.lr))


def _aggregate(runs: list[RunResult], figures: Iterable[Figure] = FIGURES,
               row: type = Row) -> Row:
    """One cell's row: its outcome from the converged or stopped runs, each telemetry figure
    as declared."""
    config = runs[0].config
    converged = [run for run in runs if run.converged]
    stopped = [run for run in runs if run.status in ("timeout", "budget")]
    times = [run.time_to_target_s for run in converged]
    accuracies = [run.test_accuracy for run in converged if run.test_accuracy is not None]
    return row(
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
        test_accuracy=statistics.median(accuracies) if accuracies else None,
        stopped=len(stopped),
        final_loss=_median(run.final_loss for run in stopped),
        final_loss_min=_extreme(min, (run.final_loss for run in stopped)),
        final_loss_max=_extreme(max, (run.final_loss for run in stopped)),
        final_test_loss=_median(run.test_loss for run in stopped),
        final_test_accuracy=_median(run.test_accuracy for run in stopped),
        step_rule=config.step.label,
        cores=min((_cores(run.environment) for run in runs if _cores(run.environment)),
                  default=None),
        blas="; ".join(sorted({_blas_label(run.environment) for run in runs} - {""})),
        machine="; ".join(sorted({machine_label(run.environment) for run in runs} - {""})),
        **{figure.name: figure.aggregate(runs) for figure in figures},
    )


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
