"""Reading run records for the claims: the strategies compared, and each run's figures.

Pure functions of :class:`~asgdbench.engine.run_result.RunResult`; the
judges in :mod:`~asgdbench.study.claim_judges` build on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from asgdbench.engine.choice import CONSTANT, Choice
from asgdbench.engine.run_result import RunResult
from asgdbench.study.claim_statistics import MIN_PAIRS, Pairs

LOCK, HOGWILD = Choice("lock-per-step-copy"), Choice("hogwild-per-step-copy")
"""The baselines as the authors ran them: a copy per step (see algorithms/lock.py, hogwild.py)."""
LEASHED = Choice("leashed", (("tp", math.inf),))
LEASHED_TP = tuple(Choice("leashed", (("tp", tp),)) for tp in (0, 1, math.inf))
"""Leashed-SGD at the persistence bounds the paper compares (tp: retries before a drop)."""
BASELINES = (LOCK, HOGWILD)
SPARSE_HOGWILD, SPARSE_LOCK = Choice("hogwild"), Choice("lock")
"""Claim 6's HOGWILD! and lock: the plain ones, whose sparse paths read and write only the
support (a copy per step, as the authors' variants make, would cost O(d) and hide the regime)."""
SPARSE_RIVALS = (SPARSE_LOCK, LEASHED)
"""What claim 6 holds HOGWILD! against: lock-based AsyncSGD and Leashed-SGD (tp=inf)."""
MIN_SEEDS = MIN_PAIRS
CLOCK_RESOLUTION_S = 1e-6
"""A time to ε below this reads as this: log ratios need times > 0."""


@dataclass(frozen=True)
class Context:
    """What a verdict needs besides the runs: the cores they had, each workload's default lr."""

    cores: int
    base_lr: dict[str, float]
    min_seeds: int = MIN_SEEDS
    missing: Mapping[str, str] = field(default_factory=dict)
    """Workloads a claim names that cannot run here (not registered: claim 6's sparse ones
    before they exist), each with the reason: their verdicts are "not testable here"."""


# -- reading the runs -------------------------------------------------------------------

def is_run_of(result: RunResult, strategy: Choice) -> bool:
    """Whether ``result`` ran ``strategy`` at the paper's constant step (the claims' runs)."""
    return result.config.strategy == strategy and result.config.step == CONSTANT


def runs_of(results: Sequence[RunResult], workload: str, strategy: Choice, threads: int,
            lr: float | None) -> list[RunResult]:
    """The valid runs of one cell (status ``error`` excluded); ``lr`` None: every step size."""
    return [r for r in results if r.config.workload == workload
            and is_run_of(r, strategy) and r.config.threads == threads
            and (lr is None or math.isclose(r.config.lr, lr, rel_tol=1e-9))
            and r.status != "error"]


def time_to_epsilon(result: RunResult) -> float:
    """Seconds to the target; a run that never reached it: its time limit (a censored value)."""
    if result.converged and result.time_to_target_s is not None:
        return max(float(result.time_to_target_s), CLOCK_RESOLUTION_S)
    return float(result.config.max_time if result.config.max_time is not None else result.wall_s)


def censored(result: RunResult) -> bool:
    """Whether the run's time to ε is only a lower bound (it timed out, stalled or diverged)."""
    return not (result.converged and result.time_to_target_s is not None)


def by_seed(runs: Sequence[RunResult], value: Callable[[RunResult], float],
            is_censored: Callable[[RunResult], bool] = lambda r: False) -> Pairs:
    """``{seed: (value, censored)}``; a seed recorded twice keeps its first run.

    A run whose value is NaN (a figure it did not record) is left out, so its
    partner counts as unpaired rather than entering a rank test as +inf.
    """
    pairs: Pairs = {}
    for r in runs:
        figure = value(r)
        if not math.isnan(figure):
            pairs.setdefault(r.config.seed, (figure, is_censored(r)))
    return pairs


def failures_per_update(result: RunResult) -> float:
    """Failed CAS attempts per applied update (0 for a strategy without CAS)."""
    failures = (result.cas or {}).get("failures") or 0
    return failures / result.updates_applied if result.updates_applied else math.nan


def dropped_share(result: RunResult) -> float:
    return (result.gradients_dropped / result.gradients_computed
            if result.gradients_computed else math.nan)


def mean_live_bytes(result: RunResult) -> float:
    """Time-averaged live parameter bytes (the peak for runs recorded before sampling existed)."""
    if result.mean_live_param_bytes is not None:
        return float(result.mean_live_param_bytes)
    return float(result.peak_param_bytes)


def bytes_written_per_update(result: RunResult) -> float:
    """Parameter bytes one applied update wrote (NaN for a run recorded before the field)."""
    value = getattr(result, "param_bytes_written_per_update", None)
    return math.nan if value is None else float(value)


def staleness_figure(result: RunResult, name: str) -> float:
    """One figure of a run's staleness distribution: mean, zero (share at τ = 0), p50, p99, max."""
    summary = result.staleness or {}
    if name == "zero":
        count = summary.get("count") or 0
        return summary.get("histogram", {}).get("0", 0) / count if count else math.nan
    value = summary.get(name)
    if value is None and name == "p50" and summary.get("count"):  # runs recorded before p50
        counts = sorted((int(k), v) for k, v in summary.get("histogram", {}).items())
        seen = 0
        for staleness, count in counts:
            seen += count
            if seen >= 0.5 * summary["count"]:
                return float(staleness)
    return math.nan if value is None else float(value)


def thread_counts_run(results: Sequence[RunResult], workload: str, strategy: Choice,
                      up_to: int) -> list[int]:
    """Thread counts from 2 to ``up_to`` at which ``strategy`` has runs on ``workload``."""
    return sorted({r.config.threads for r in results if r.config.workload == workload
                   and is_run_of(r, strategy) and 2 <= r.config.threads <= up_to})


def too_few(cells: dict, need: int) -> str | None:
    """A reason if any cell has fewer than ``need`` runs."""
    short = [f"{label} has {len(runs)}" for label, runs in cells.items() if len(runs) < need]
    return f"needs >= {need} seeds per cell; {', '.join(short)}" if short else None
