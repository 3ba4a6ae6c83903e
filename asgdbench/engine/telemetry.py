"""Telemetry, declared once: what a run records and how a table sums runs up.

A :class:`Telemetry` is one field of a run's record (an attribute of
:class:`~asgdbench.engine.run_result.RunResult`, a key of ``runs.jsonl``): its unit, what
it means, how it is measured when the run ends (:class:`RunEnd`), the value a record that
lacks it loads with, and its asv track, if any. A :class:`Figure` is one number of a grid
cell in the ``report`` table and ``summary.csv``: how the cell's runs aggregate into it
(:class:`Median`, :class:`Maximum`, :class:`SumRatio`, :class:`WeightedMean`,
:class:`Pooled` histogram), its ``--columns`` name, header, format and footer line.

Adding a metric is adding its declarations to :data:`TELEMETRY` and :data:`FIGURES`: the
record's fields, ``to_dict``/``from_dict``, the table's columns, ``summary.csv`` and the
asv tracks (``benchmarks/bench_training.py``) are built from these tuples. A figure that
needs a new per-thread counter also needs its column in :mod:`asgdbench.engine.worker`,
where the workers count it without the GIL.

Outcome fields (status, times to target, losses, accuracy) and provenance (machine,
sources) are not telemetry: they decide which runs a figure may pool, and stay with the
record and the table that read them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from asgdbench.engine.statistics import histogram_summary

if TYPE_CHECKING:
    from asgdbench.plugins.step_rules import StepSpec
    from asgdbench.plugins.strategies import Strategy

# The layout of the per-thread counters the workers record (:mod:`asgdbench.engine.worker`),
# declared here so that the measures below read them without importing numba.
# Columns of the per-thread counter rows (a row is two cache lines). SUPPORT_SUM: the
# coordinates each computed gradient touched, summed (a dense gradient adds n_params).
(COMPUTED, APPLIED_COUNT, DROPPED_COUNT, MERGED_COUNT, STALENESS_SUM, STALENESS_MAX,
 ATTEMPTS_SUM, LOG_LOST, SUPPORT_SUM) = range(9)
COUNTER_COLUMNS = 16

STALENESS_BINS = 4096  # the last bin collects everything at or above it
ATTEMPT_BINS = 64

# columns of the per-thread step rows (float64, a row is one cache line)
STEP_SUM, FACTOR_MIN, FACTOR_MAX = range(3)
STEP_COLUMNS = 8
FACTOR_BINS = 64
FACTOR_BIN_WIDTH = 1.0 / 32  # bin i holds factors in [i, i + 1) / 32; the last, all above

MISSING = "—"
"""What a table cell shows for a figure the runs did not produce."""

Run = Any
"""A run's record (:class:`~asgdbench.engine.run_result.RunResult`, built from this module)."""


# -- the end of a run, as measures see it ----------------------------------------------

@dataclass(frozen=True)
class RunEnd:
    """What a finished run leaves for the measures: the workers' counters, the state, the clock."""

    telemetry: Any
    """The workers' :class:`~asgdbench.engine.worker.ThreadTelemetry`."""
    wall_s: float
    threads: int
    lr: float
    strategy: "Strategy"
    state: tuple
    vector_bytes: int
    """Bytes of one parameter vector (parameters times the dtype's size)."""
    live: dict[str, Any]
    """The monitor's samples of live parameter vectors, summarised (empty: no sample)."""
    step_spec: "StepSpec"
    rule_state: tuple
    monitor_lost_entries: int
    """Loss-log entries the monitor found overwritten before it read them."""
    n_params: int = 0
    """Parameters of the model (0: unknown, then the write-volume field is None)."""

    def total(self, column: int) -> int:
        """A per-thread counter summed over the threads."""
        return int(self.telemetry.counters[:, column].sum())

    @property
    def applied(self) -> int:
        return self.total(APPLIED_COUNT)

    @property
    def peak_vectors(self) -> int:
        return int(self.strategy.peak_param_vectors(self.state, self.threads))


def staleness_summary(end: RunEnd) -> dict[str, Any]:
    """The staleness histogram of the applied updates, with the exact mean and max."""
    counters = end.telemetry.counters
    staleness_max = int(counters[:, STALENESS_MAX].max()) if end.applied else None
    return histogram_summary(end.telemetry.staleness.sum(axis=0), staleness_max,
                             exact_sum=end.total(STALENESS_SUM))


def cas_summary(end: RunEnd) -> dict[str, Any] | None:
    """Attempts per update and the share of failed CAS (None: the strategy publishes without)."""
    if not end.strategy.uses_cas:
        return None
    attempts = end.telemetry.attempts.sum(axis=0)
    total_attempts = end.total(ATTEMPTS_SUM)
    failures = total_attempts - end.applied
    return {
        "attempts": histogram_summary(attempts),
        "total_attempts": total_attempts,
        "failures": failures,
        "failure_rate": failures / total_attempts if total_attempts else 0.0,
    }


def step_summary(end: RunEnd) -> dict[str, Any]:
    """What the step rule did to the applied updates: mean step, factor range and histogram."""
    steps, applied, spec = end.telemetry.steps, end.applied, end.step_spec
    summary: dict[str, Any] = {"rule": spec.label, "params": spec.kwargs, "lr": end.lr,
                               "state": spec.rule.inspect(end.rule_state)}
    if applied == 0:
        return summary | {"step_sum": 0.0, "mean_step": None, "mean_factor": None,
                          "factor_min": None, "factor_max": None, "factors": {}}
    step_sum = float(steps[:, STEP_SUM].sum())
    mean_step = step_sum / applied
    counts = end.telemetry.factors.sum(axis=0)
    return summary | {
        "step_sum": step_sum,  # of the applied updates: exact where the steps are dyadic
        "mean_step": mean_step,
        "mean_factor": mean_step / end.lr,
        "factor_min": float(steps[:, FACTOR_MIN].min()),
        "factor_max": float(steps[:, FACTOR_MAX].max()),
        "factor_bin_width": FACTOR_BIN_WIDTH,
        # bin i: factors in [i, i + 1) * width; the last bin also holds everything above
        "factors": {f"{i * FACTOR_BIN_WIDTH:g}": int(counts[i]) for i in np.flatnonzero(counts)},
    }


def mean_support(end: RunEnd) -> float | None:
    """Coordinates one computed gradient touched, on average (dense: every parameter)."""
    computed = end.total(COMPUTED)
    return end.total(SUPPORT_SUM) / computed if computed else None


def param_bytes_written_per_update(end: RunEnd) -> float | None:
    """Bytes of parameter vectors one applied update writes: the strategy's
    ``written_per_update(n_params, mean support)`` elements times the dtype's size."""
    support = mean_support(end)
    if support is None or end.strategy is None or end.n_params <= 0:
        return None
    itemsize = end.vector_bytes // end.n_params
    return float(end.strategy.written_per_update(end.n_params, support)) * itemsize


def _empty_staleness() -> dict[str, Any]:
    return histogram_summary(np.zeros(1, dtype=np.int64))


# -- what a record holds ---------------------------------------------------------------

@dataclass(frozen=True)
class Track:
    """An asv ``track_<name>`` benchmark of each grid cell's one run.

    ``group`` is the benchmark class: ``execution`` (a missing value is NaN, asv's ``n/a``),
    ``contention`` (a cell whose run lacks every contention figure is skipped) or ``sparse``
    (the sparse regime's grid, :mod:`benchmarks.bench_sparse`).
    """

    name: str
    unit: str
    description: str
    read: Callable[[Run], float | None]
    group: str = "execution"


@dataclass(frozen=True)
class Telemetry:
    """One field of a run's record, measured by the runner when the run ends."""

    name: str
    unit: str
    description: str
    measure: Callable[[RunEnd], Any]
    empty: Callable[[], Any] = lambda: None
    """The value of a record that lacks the field: written before it existed, or never run."""
    tracks: tuple[Track, ...] = ()


def _per_thread(column: int) -> Callable[[RunEnd], list[int]]:
    return lambda end: [int(v) for v in end.telemetry.counters[:, column]]


TELEMETRY: tuple[Telemetry, ...] = (
    Telemetry("updates_applied", "updates", "updates applied to the shared model",
              lambda end: end.applied, lambda: 0),
    Telemetry("gradients_computed", "gradients", "minibatch gradients computed",
              lambda end: end.total(COMPUTED), lambda: 0),
    Telemetry("gradients_dropped", "gradients", "gradients computed but never applied",
              lambda end: end.total(DROPPED_COUNT), lambda: 0),
    Telemetry("updates_per_s", "updates/s", "updates applied per second of the run",
              lambda end: end.applied / end.wall_s if end.wall_s > 0 else 0.0, lambda: 0.0,
              tracks=(Track("updates_per_second", "updates/s",
                            "Updates applied per second of the run (higher is better).",
                            lambda run: run.updates_per_s),)),
    Telemetry("per_thread_updates", "updates", "updates applied, per thread",
              _per_thread(APPLIED_COUNT), list),
    Telemetry("per_thread_gradients", "gradients", "gradients computed, per thread",
              _per_thread(COMPUTED), list),
    Telemetry("staleness", "updates",
              "updates other threads applied between a thread's read and its update: "
              "count, mean, p50, p99, p99.9, max and the histogram ({value: count})",
              staleness_summary, _empty_staleness,
              tracks=(Track("staleness_mean", "updates",
                            "Mean number of updates applied between a gradient's read and its "
                            "own update.", lambda run: run.staleness["mean"]),)),
    Telemetry("cas", "attempts",
              "compare-and-swap attempts to publish: their histogram per update, total, "
              "failures and failure rate (None: the strategy publishes without CAS)",
              cas_summary,
              tracks=(Track("cas_failure_rate", "failures/attempt",
                            "Failed CAS attempts over all CAS attempts to publish an update.",
                            lambda run: None if run.cas is None else run.cas["failure_rate"],
                            group="contention"),)),
    Telemetry("peak_param_vectors", "vectors",
              "most parameter vectors alive at once, as the strategy counts them",
              lambda end: end.peak_vectors, lambda: 0),
    Telemetry("peak_param_bytes", "bytes", "those vectors' bytes",
              lambda end: end.peak_vectors * end.vector_bytes, lambda: 0,
              tracks=(Track("peak_param_bytes", "bytes",
                            "Most bytes of parameter vectors alive at once (copies, versions, "
                            "the model).", lambda run: run.peak_param_bytes),)),
    Telemetry("step_rule", "lr",
              "the steps applied: mean step, mean/min/max factor (step / lr), a histogram of "
              "factors", step_summary, dict),
    Telemetry("log_entries_lost", "entries",
              "loss-log entries never read (overwritten in the ring); the smoothed loss "
              "skipped them",
              lambda end: end.total(LOG_LOST) + end.monitor_lost_entries, lambda: 0),
    Telemetry("live_param_vectors", "vectors",
              "parameter vectors alive during the run, sampled by the monitor every poll: "
              "mean (time-weighted), max (of the samples), samples, trace ([seconds, count])",
              lambda end: end.live, dict),
    Telemetry("mean_live_param_bytes", "bytes",
              "live_param_vectors' mean times the bytes of one vector",
              lambda end: end.live.get("mean", end.peak_vectors)
              * end.vector_bytes),
    Telemetry("mean_support", "coordinates",
              "coordinates a gradient touched, mean over the gradients computed (the "
              "minibatch's union support on a sparse workload; every parameter on a dense one)",
              mean_support),
    Telemetry("param_bytes_written_per_update", "bytes",
              "parameter-vector bytes one applied update writes, as the strategy counts them "
              "(the support in place; Leashed-SGD: a whole new vector per publish)",
              param_bytes_written_per_update,
              tracks=(Track("param_bytes_written_per_update", "bytes",
                            "Parameter bytes one applied update wrote: the support's, or the "
                            "whole vector's.",
                            lambda run: run.param_bytes_written_per_update, group="sparse"),)),
)
"""Every telemetry field of a run's record, in the order ``to_dict`` writes them."""


def measure(end: RunEnd, telemetry: Sequence[Telemetry] | None = None) -> dict[str, Any]:
    """Every telemetry field of a finished run, by name (default: of :data:`TELEMETRY`)."""
    return {item.name: item.measure(end) for item in (telemetry or TELEMETRY)}


def tracks(group: str, telemetry: Sequence[Telemetry] | None = None) -> list[Track]:
    """The asv tracks of one benchmark class, in declaration order (default: of
    :data:`TELEMETRY`)."""
    return [track for item in (telemetry or TELEMETRY) for track in item.tracks
            if track.group == group]


# -- how runs aggregate into a table cell -------------------------------------------

def _finite(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None and math.isfinite(value)]


@dataclass(frozen=True)
class Median:
    """The median of the runs' values (runs without a finite value are left out)."""

    value: Callable[[Run], float | None]

    def __call__(self, runs: Sequence[Run]) -> float | None:
        values = _finite(self.value(run) for run in runs)
        return statistics.median(values) if values else None


@dataclass(frozen=True)
class Maximum:
    """The largest of the runs' values."""

    value: Callable[[Run], float | None]

    def __call__(self, runs: Sequence[Run]) -> float | None:
        values = _finite(self.value(run) for run in runs)
        return max(values) if values else None


@dataclass(frozen=True)
class SumRatio:
    """Sum of ``part`` over sum of ``whole``, pooled over the runs that have a ``part``."""

    part: Callable[[Run], float | None]
    whole: Callable[[Run], float]

    def __call__(self, runs: Sequence[Run]) -> float | None:
        having = [run for run in runs if self.part(run) is not None]
        whole = sum(self.whole(run) for run in having)
        return sum(self.part(run) for run in having) / whole if having and whole else None


@dataclass(frozen=True)
class WeightedMean:
    """The runs' values weighted by ``weight`` (a mean per update becomes a mean over all)."""

    value: Callable[[Run], float | None]
    weight: Callable[[Run], float]

    def __call__(self, runs: Sequence[Run]) -> float | None:
        having = [run for run in runs if self.value(run) is not None]
        weight = sum(self.weight(run) for run in having)
        if not weight:
            return None
        return sum(self.value(run) * self.weight(run) for run in having) / weight


def pooled_histogram(summaries: Iterable[dict]) -> dict[int, int]:
    """Several runs' sparse histograms (``{"value": count}``) added together."""
    pooled: dict[int, int] = {}
    for summary in summaries:
        for value, count in summary["histogram"].items():
            pooled[int(value)] = pooled.get(int(value), 0) + count
    return pooled


@dataclass(frozen=True)
class Pooled:
    """A statistic (``mean``, ``p99``, ...) of the runs' histograms added together."""

    histogram: Callable[[Run], dict]
    statistic: str

    def __call__(self, runs: Sequence[Run]) -> float | None:
        pooled = pooled_histogram(self.histogram(run) for run in runs)
        dense = np.zeros(max(pooled, default=-1) + 1, dtype=np.int64)
        for value, count in pooled.items():
            dense[value] = count
        return histogram_summary(dense)[self.statistic]


Aggregate = Median | Maximum | SumRatio | WeightedMean | Pooled


# -- how a figure reads in the table ------------------------------------------------

def fixed(template: str) -> Callable[[Any], str]:
    """Format a value with ``template`` (``"{:.2f}"``); a missing one as :data:`MISSING`."""
    return lambda value: MISSING if value is None else template.format(value)


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal."""
    return MISSING if value is None else f"{100 * value:.1f}%"


def byte_size(count: float | None) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    if count is None:
        return MISSING
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@dataclass(frozen=True)
class Figure:
    """One number of a grid cell: a table row's attribute, a ``summary.csv`` column, and
    a column ``report --columns`` can show (``column``, ``header``, ``format``; the footer
    says ``header: meaning``)."""

    name: str
    unit: str
    aggregate: Aggregate
    column: str
    header: str
    format: Callable[[Any], str]
    meaning: str
    type: Any = field(default=float | None)


def _cas_part(run: Run) -> int | None:
    return None if run.cas is None else run.cas["failures"]


def _mean_factor(run: Run) -> float | None:
    return run.step_rule["mean_factor"] if run.step_rule.get("mean_step") is not None else None


FIGURES: tuple[Figure, ...] = (
    Figure("updates_per_s", "updates/s", Median(lambda run: run.updates_per_s),
           "updates", "updates/s", fixed("{:,.0f}"),
           "updates applied per second of wall time (median over runs).", float),
    Figure("staleness_mean", "updates", Pooled(lambda run: run.staleness, "mean"),
           "staleness", "staleness", fixed("{:.2f}"),
           "mean number of updates other threads applied between a thread's read and its "
           "update (all runs pooled)."),
    Figure("step_factor_mean", "lr", WeightedMean(_mean_factor, lambda run: run.updates_applied),
           "step-factor", "step/lr", fixed("{:.3f}"),
           "mean step of the applied updates over the base lr, all runs pooled: what the "
           "step rule (the +RULE of the strategy column) made of lr; 1 for constant."),
    Figure("staleness_p99", "updates", Pooled(lambda run: run.staleness, "p99"),
           "staleness-p99", "stale p99", fixed("{}"),
           "99th percentile of that staleness, in updates.", int | None),
    Figure("staleness_p999", "updates", Pooled(lambda run: run.staleness, "p999"),
           "staleness-p999", "stale p99.9", fixed("{}"),
           "99.9th percentile of that staleness, in updates.", int | None),
    Figure("cas_failure_rate", "failures/attempt",
           SumRatio(_cas_part, lambda run: run.cas["total_attempts"]),
           "cas", "CAS fail", percent,
           "failed compare-and-swap attempts to publish / all attempts (CAS strategies only)."),
    Figure("dropped_fraction", "gradients/gradient",
           SumRatio(lambda run: run.gradients_dropped, lambda run: run.gradients_computed),
           "dropped", "dropped", percent,
           "gradients computed but never applied (Leashed-SGD gives up after tp failed CAS) / "
           "gradients computed."),
    Figure("peak_param_bytes", "bytes", Maximum(lambda run: run.peak_param_bytes),
           "peak-params", "peak params", byte_size,
           "most parameter-vector memory alive at once (model, per-thread copies, versions), "
           "max over runs.", int),
    Figure("param_bytes_written_per_update", "bytes",
           Median(lambda run: run.param_bytes_written_per_update),
           "written", "written/update", byte_size,
           "parameter-vector bytes one applied update writes (a sparse path: the support; "
           "Leashed-SGD: a whole new version), median over runs.", float),
)
"""Every telemetry figure of a table row, in the order ``--columns`` lists them."""
