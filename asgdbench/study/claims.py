"""The paper's claims as data: each one's statement, the runs it needs, and its verdict rule.

*Consistent Lock-free Parallel SGD for Fast and Stable Convergence*
(Bäckström et al., IPDPS 2021) makes five claims this harness can test. Each
:class:`Claim` says which runs it needs at a :class:`Scale` on a machine with
a given number of cores, and judges them with a rule written in the report
next to the verdict. Verdicts are pure functions of run records: nothing here
runs anything, so a test can feed synthetic records and get each verdict.

A verdict is ``supported``, ``not supported`` or ``not testable here``. A
claim made of parts (claim 1's speed-up, and its growth with threads) is
``not supported`` if any part is, ``supported`` if every part is, and
otherwise ``not testable here``, with each part's reason in the report.
Statistics use a seeded bootstrap (:data:`RESAMPLES` resamples of the seeds,
95 % percentile intervals), so a report re-rendered from the same runs gives
the same verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from asgdbench.engine.run_result import RunResult

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not supported", "not testable here"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE)
MIN_SEEDS = 5
"""Seeds a cell needs before a verdict is drawn from it."""
RESAMPLES = 2000
BOOTSTRAP_SEED = 20210517  # fixed: the same runs always give the same intervals

LOCK, HOGWILD, LEASHED = "lock", "hogwild", "leashed:tp=inf"
LEASHED_TP = ("leashed:tp=0", "leashed:tp=1", "leashed:tp=inf")
BASELINES = (LOCK, HOGWILD)
STALENESS_MARGIN = 1.10
"""Claim 5's non-inferiority margin: Leashed's mean staleness at most 10 % above lock's."""


@dataclass(frozen=True)
class Scale:
    """How much of each claim's grid to run: seeds, step sizes, thread counts, time limits."""

    name: str
    seeds: int
    lr_factors: tuple[float, ...]
    """Step sizes of claim 2, as multiples of the workload's default step size."""
    max_thread_counts: int
    """At most this many thread counts within the cores (the largest ones, 2 and up)."""
    max_time_factor: float
    """Each run's time limit, as a share of the workload's default ``max_time``."""
    workloads: tuple[str, ...]
    """Default workloads, those whose data is present; ``--workloads`` overrides."""
    budget: str


SCALES = {
    # step sizes up to 64x the default: on mlp-digits 16x still converges under every
    # strategy and 64x is where they start to differ (diverge or stall)
    "quick": Scale("quick", 5, (1.0, 16.0, 64.0), 1, 1 / 3, ("mlp-digits",),
                   "at most 15 minutes on 2 cores"),
    "standard": Scale("standard", 5, (0.25, 1.0, 4.0, 16.0, 64.0), 3, 0.5,
                      ("mlp-digits", "cnn-mnist"), "about an hour on 2 cores"),
    "paper": Scale("paper", 10, (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0), 16, 1.0,
                   ("mlp-digits", "mlp-mnist", "cnn-mnist", "lenet-mnist"),
                   "many hours; threads up to the cores and beyond"),
}


def parallel_threads(cores: int, scale: Scale) -> list[int]:
    """Thread counts that each get a core: powers of two from 2 and ``cores``, the largest kept."""
    counts = sorted({2 ** k for k in range(1, 16) if 2 ** k <= cores} | ({cores} - {1}))
    return counts[-scale.max_thread_counts:] if counts else [1]


def oversubscribed_threads(cores: int) -> int:
    """A thread count beyond the cores (twice them): memory and contention, not speed."""
    return 2 * cores


@dataclass(frozen=True)
class Cells:
    """Part of a claim's grid: strategies x thread counts x step sizes (multiples), every seed."""

    strategies: tuple[str, ...]
    threads: tuple[int, ...]
    lr_factors: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class Context:
    """What a verdict needs besides the runs: the cores they had, each workload's default lr."""

    cores: int
    base_lr: dict[str, float]
    min_seeds: int = MIN_SEEDS


@dataclass(frozen=True)
class Part:
    """One checkable piece of a claim, with its own verdict and the numbers behind it."""

    name: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """A claim judged on one workload: the verdict, the rule, why, and the table behind it."""

    claim: int
    workload: str
    verdict: str
    rule: str
    parts: tuple[Part, ...]
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def reason(self) -> str:
        return "; ".join(f"{part.name}: {part.verdict} ({part.reason})" for part in self.parts)


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: what it says, the runs it needs, and how they are judged."""

    number: int
    title: str
    statement: str
    rule: str
    figure: str
    """What the claim's figure shows (its caption)."""
    plan: Callable[[Scale, int], list[Cells]]
    judge: Callable[[Sequence[RunResult], str, Context], Verdict]


# -- statistics ---------------------------------------------------------------------

def bootstrap_interval(samples: Sequence[Sequence[float]],
                       statistic: Callable[..., float]) -> tuple[float, float, float]:
    """``statistic(*samples)`` and its 95 % percentile bootstrap interval.

    Each sample is resampled with replacement on its own (independent runs),
    with a fixed seed, so that the same runs give the same interval.
    ``statistic`` reduces the last axis, so that all resamples go at once.
    """
    arrays = [np.asarray(sample, dtype=float) for sample in samples]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = [array[rng.integers(0, array.size, (RESAMPLES, array.size))]
                 for array in arrays]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.asarray(statistic(*resampled), dtype=float)
        point = float(statistic(*arrays))
    values = values[np.isfinite(values)]
    if not values.size:
        return point, math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return point, float(low), float(high)


def median_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Median of the first over median of the second, along the last axis (nan if not > 0)."""
    below = np.median(denominator, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(below > 0, np.median(numerator, axis=-1) / below, np.nan)


def median_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.median(first, axis=-1) - np.median(second, axis=-1)


def _interval(point: float, low: float, high: float, digits: int = 2) -> str:
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# -- reading the runs -----------------------------------------------------------------

def runs_of(results: Sequence[RunResult], workload: str, algorithm: str, threads: int,
            lr: float | None) -> list[RunResult]:
    """The valid runs of one cell (status ``error`` excluded); ``lr`` None: every step size."""
    return [r for r in results if r.config.workload == workload
            and r.config.algorithm == algorithm and r.config.threads == threads
            and (lr is None or math.isclose(r.config.lr, lr, rel_tol=1e-9))
            and r.status != "error"]


def time_to_epsilon(result: RunResult) -> float:
    """Seconds to the target; a run that never reached it counts at its time limit (censored).

    Censoring at the limit understates that run's time, so a ratio against it
    can only understate the advantage of the strategy that did converge.
    """
    if result.converged and result.time_to_target_s is not None:
        return float(result.time_to_target_s)
    return float(result.config.max_time if result.config.max_time is not None else result.wall_s)


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


def mean_staleness(result: RunResult) -> float:
    value = result.staleness.get("mean")
    return math.nan if value is None else float(value)


def thread_counts_run(results: Sequence[RunResult], workload: str, algorithm: str,
                      up_to: int) -> list[int]:
    """Thread counts from 2 to ``up_to`` at which ``algorithm`` has runs on ``workload``."""
    return sorted({r.config.threads for r in results if r.config.workload == workload
                   and r.config.algorithm == algorithm and 2 <= r.config.threads <= up_to})


def combine(parts: Sequence[Part]) -> str:
    """Any part not supported: not supported; every part supported: supported; else not testable."""
    verdicts = {part.verdict for part in parts}
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if verdicts == {SUPPORTED}:
        return SUPPORTED
    return NOT_TESTABLE


def _too_few(cells: dict[str, list], need: int) -> str | None:
    """A reason if any cell has fewer than ``need`` runs."""
    short = [f"{label} has {len(runs)}" for label, runs in cells.items() if len(runs) < need]
    return f"needs >= {need} seeds per cell; {', '.join(short)}" if short else None


# -- claim 1: time to convergence --------------------------------------------------------

def _plan_speed(scale: Scale, cores: int) -> list[Cells]:
    return [Cells((LOCK, HOGWILD, LEASHED), tuple(parallel_threads(cores, scale)))]


def _judge_speed(results: Sequence[RunResult], workload: str, context: Context) -> Verdict:
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, LEASHED, context.cores)
    headers = ("threads", "strategy", "median time to ε [s] (unreached: at limit)", "converged",
               "speed-up of Leashed (ratio [95% CI])")
    rows, speed = [], []
    for threads in counts:
        leashed = runs_of(results, workload, LEASHED, threads, lr)
        cells = {LEASHED: leashed, **{b: runs_of(results, workload, b, threads, lr)
                                      for b in BASELINES}}
        short = _too_few(cells, context.min_seeds)
        for label, runs in cells.items():
            times = [time_to_epsilon(r) for r in runs]
            ratio = "—"
            if label != LEASHED and not short:
                point, low, high = bootstrap_interval(
                    [times, [time_to_epsilon(r) for r in leashed]], median_ratio)
                ratio = _interval(point, low, high)
                if not low > 1:
                    speed.append(Part(f"faster than {label} at {threads} threads", NOT_SUPPORTED,
                                      f"ratio {ratio}, interval does not exceed 1"))
                else:
                    speed.append(Part(f"faster than {label} at {threads} threads", SUPPORTED,
                                      f"ratio {ratio}"))
            rows.append((str(threads), label, f"{np.median(times):.3g}" if times else "—",
                         f"{sum(r.converged for r in runs)}/{len(runs)}", ratio))
        if short:
            speed.append(Part(f"speed-up at {threads} threads", NOT_TESTABLE, short))
    if not counts:
        speed.append(Part("speed-up", NOT_TESTABLE,
                          f"needs >= 2 threads on >= 2 cores; the runs had {context.cores}"))
    if len(counts) >= 2:
        first, last = counts[0], counts[-1]
        ratio_at = {}
        for threads in (first, last):
            leashed = [time_to_epsilon(r) for r in runs_of(results, workload, LEASHED, threads, lr)]
            ratio_at[threads] = min(
                median_ratio(np.array([time_to_epsilon(r) for r in
                                       runs_of(results, workload, b, threads, lr)] or [math.nan]),
                             np.array(leashed or [math.nan])) for b in BASELINES)
        grows = ratio_at[last] >= ratio_at[first]
        growth = Part("advantage holds as threads grow", SUPPORTED if grows else NOT_SUPPORTED,
                      f"smallest ratio {ratio_at[first]:.2f} at {first} threads, "
                      f"{ratio_at[last]:.2f} at {last}")
    else:
        growth = Part("advantage holds as threads grow", NOT_TESTABLE,
                      f"needs two thread counts >= 2 that each get a core, so >= 4 cores; "
                      f"the runs had {context.cores}")
    return Verdict(1, workload, combine([*speed, growth]), CLAIMS[0].rule,
                   (*speed, growth), headers, tuple(rows))


# -- claim 2: stability across step sizes and seeds ----------------------------------------

def _plan_stability(scale: Scale, cores: int) -> list[Cells]:
    return [Cells((LOCK, HOGWILD, LEASHED), (parallel_threads(cores, scale)[-1],),
                  scale.lr_factors)]


def relative_spread(times: np.ndarray) -> np.ndarray:
    """Interquartile range over median (last axis): spread of time to ε whatever its scale."""
    times = np.asarray(times, dtype=float)
    if times.shape[-1] < 2:
        return np.full(times.shape[:-1], np.nan)
    low, middle, high = np.percentile(times, [25, 50, 75], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(middle > 0, (high - low) / middle, np.nan)


def _judge_stability(results: Sequence[RunResult], workload: str, context: Context) -> Verdict:
    threads = max([r.config.threads for r in results if r.config.workload == workload
                   and r.config.algorithm == LEASHED and r.config.threads <= context.cores]
                  or [0])
    lrs = sorted({r.config.lr for r in results if r.config.workload == workload
                  and r.config.algorithm == LEASHED and r.config.threads == threads})
    headers = ("strategy", "step size", "converged", "median time to ε [s]",
               "spread (IQR/median)")
    rows, parts = [], []
    cells = {label: {lr: runs_of(results, workload, label, threads, lr) for lr in lrs}
             for label in (LEASHED, *BASELINES)}
    for label, by_lr in cells.items():
        for lr, runs in by_lr.items():
            times = np.array([r.time_to_target_s for r in runs if r.converged])
            rows.append((label, f"{lr:g}", f"{len(times)}/{len(runs)}",
                         f"{np.median(times):.3g}" if times.size else "—",
                         f"{float(relative_spread(times)):.2f}" if times.size >= 2 else "—"))
    if threads == 0 or len(lrs) < 2:
        parts.append(Part("stability", NOT_TESTABLE,
                          f"needs >= 2 step sizes at a thread count within the {context.cores} "
                          f"cores; the runs have {len(lrs)}"))
    else:
        short = _too_few({f"{label} lr={lr:g}": runs for label, by_lr in cells.items()
                          for lr, runs in by_lr.items()}, context.min_seeds)
        if short:
            parts.append(Part("stability", NOT_TESTABLE, short))
        else:
            for baseline in BASELINES:
                parts.append(_stability_part(cells[LEASHED], cells[baseline], baseline))
    return Verdict(2, workload, combine(parts), CLAIMS[1].rule, tuple(parts), headers,
                   tuple(rows))


def _normalised_times(by_lr: dict[float, list[RunResult]], lrs: Sequence[float]) -> np.ndarray:
    """Converged times at each step size over that step size's median: one pooled sample."""
    pooled = []
    for lr in lrs:
        times = np.array([r.time_to_target_s for r in by_lr[lr] if r.converged])
        if times.size:
            pooled.extend(times / np.median(times))
    return np.array(pooled)


def _stability_part(leashed: dict[float, list[RunResult]], baseline: dict[float, list[RunResult]],
                    label: str) -> Part:
    ours = [float(r.converged) for runs in leashed.values() for r in runs]
    theirs = [float(r.converged) for runs in baseline.values() for r in runs]
    success = bootstrap_interval([ours, theirs], lambda a, b: a.mean(-1) - b.mean(-1))
    text = f"success rate {np.mean(ours):.0%} vs {np.mean(theirs):.0%}, " \
           f"difference {_interval(*success)}"
    if success[0] < 0 and success[2] < 0:
        return Part(f"vs {label}", NOT_SUPPORTED, text + ": converges less often")
    if success[1] > 0:
        return Part(f"vs {label}", SUPPORTED, text)
    # both converge about as often: the spread of time to epsilon decides
    both = [lr for lr in leashed if sum(r.converged for r in leashed[lr]) >= 2
            and sum(r.converged for r in baseline[lr]) >= 2]
    if not both:
        return Part(f"vs {label}", NOT_TESTABLE,
                    text + "; no step size where both converged twice, so no spread to compare")
    spread = bootstrap_interval([_normalised_times(baseline, both),
                                 _normalised_times(leashed, both)],
                                lambda b, a: relative_spread(b) / relative_spread(a))
    text += f"; spread ratio ({label} / Leashed) {_interval(*spread)}"
    if spread[1] > 1 and np.mean(ours) >= np.mean(theirs):
        return Part(f"vs {label}", SUPPORTED, text)
    return Part(f"vs {label}", NOT_SUPPORTED, text + ": no smaller spread shown")


# -- claim 3: memory -----------------------------------------------------------------------

def _plan_memory(scale: Scale, cores: int) -> list[Cells]:
    threads = (*parallel_threads(cores, scale), oversubscribed_threads(cores))
    return [Cells((LOCK, HOGWILD, LEASHED), threads)]


def _leashed_over_lock(cells: dict[str, list[RunResult]], threads: int,
                       metric: Callable[[RunResult], float], context: Context, what: str,
                       holds: Callable[[float], bool], why_not: str) -> tuple[Part, str]:
    """One thread count's part: the bootstrap interval of Leashed's median ``metric`` over lock's.

    ``holds(high)`` judges the interval's upper end; too few seeds is ``not testable here``.
    """
    short = _too_few({k: v for k, v in cells.items() if k != HOGWILD}, context.min_seeds)
    if short:
        return Part(f"{threads} threads", NOT_TESTABLE, short), "—"
    point, low, high = bootstrap_interval([[metric(r) for r in cells[LEASHED]],
                                           [metric(r) for r in cells[LOCK]]], median_ratio)
    ratio = _interval(point, low, high)
    verdict = holds(high)
    return (Part(f"{threads} threads", SUPPORTED if verdict else NOT_SUPPORTED,
                 f"{what} Leashed/lock {ratio}" + ("" if verdict else why_not)), ratio)


def _judge_memory(results: Sequence[RunResult], workload: str, context: Context) -> Verdict:
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, LEASHED, 10 ** 9)
    headers = ("threads", "strategy", "mean live vectors", "peak vectors", "mean live bytes",
               "Leashed / lock (ratio [95% CI])")
    rows, parts = [], []
    for threads in counts:
        cells = {LEASHED: runs_of(results, workload, LEASHED, threads, lr),
                 LOCK: runs_of(results, workload, LOCK, threads, lr),
                 HOGWILD: runs_of(results, workload, HOGWILD, threads, lr)}
        part, ratio = _leashed_over_lock(cells, threads, mean_live_bytes, context,
                                         "time-averaged live bytes", lambda high: high < 1,
                                         ", interval does not lie below 1")
        parts.append(part)
        for label, runs in cells.items():
            if not runs:
                continue
            live = [r.live_param_vectors.get("mean", r.peak_param_vectors) for r in runs]
            rows.append((str(threads), label, f"{np.median(live):.2f}",
                         str(max(r.peak_param_vectors for r in runs)),
                         _bytes(np.median([mean_live_bytes(r) for r in runs])),
                         ratio if label == LEASHED else ""))
    if not counts:
        parts.append(Part("memory", NOT_TESTABLE, "no Leashed runs with >= 2 threads"))
    return Verdict(3, workload, combine(parts), CLAIMS[2].rule, tuple(parts), headers,
                   tuple(rows))


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.3g} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1024


# -- claim 4: contention regulation --------------------------------------------------------

def _plan_contention(scale: Scale, cores: int) -> list[Cells]:
    threads = (*parallel_threads(cores, scale), oversubscribed_threads(cores))
    return [Cells(LEASHED_TP, threads)]


def _judge_contention(results: Sequence[RunResult], workload: str, context: Context) -> Verdict:
    lr = context.base_lr[workload]
    headers = ("strategy", "threads", "CAS failures / update", "dropped share",
               "mean staleness", "runs")
    rows = []
    every = sorted({r.config.threads for r in results if r.config.workload == workload
                    and r.config.algorithm in LEASHED_TP})
    for label in LEASHED_TP:
        for threads in every:
            runs = runs_of(results, workload, label, threads, lr)
            if runs:
                note = "" if threads <= context.cores else " (time-shared)"
                rows.append((label, f"{threads}{note}",
                             f"{np.median([failures_per_update(r) for r in runs]):.4f}",
                             f"{np.median([dropped_share(r) for r in runs]):.2%}",
                             f"{np.median([mean_staleness(r) for r in runs]):.2f}",
                             str(len(runs))))
    counts = thread_counts_run(results, workload, LEASHED, context.cores)
    parts = [_growth_part(results, workload, lr, counts, context),
             _tp_part(results, workload, lr, counts, context)]
    return Verdict(4, workload, combine(parts), CLAIMS[3].rule, tuple(parts), headers,
                   tuple(rows))


def _growth_part(results, workload, lr, counts, context) -> Part:
    name = "failures per update grow sub-linearly"
    if len(counts) < 2:
        return Part(name, NOT_TESTABLE, f"needs two thread counts >= 2 that each get a core, so "
                                        f">= 4 cores; the runs had {context.cores}")
    first, last = counts[0], counts[-1]
    low_runs = runs_of(results, workload, LEASHED, first, lr)
    high_runs = runs_of(results, workload, LEASHED, last, lr)
    short = _too_few({f"{first} threads": low_runs, f"{last} threads": high_runs},
                     context.min_seeds)
    if short:
        return Part(name, NOT_TESTABLE, short)
    floor = 1e-6  # no failure at all: growth from (almost) nothing

    def exponent(low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return np.log((np.median(high, axis=-1) + floor) / (np.median(low, axis=-1) + floor)) \
            / math.log(last / first)
    point, low, high = bootstrap_interval([[failures_per_update(r) for r in low_runs],
                                           [failures_per_update(r) for r in high_runs]], exponent)
    text = f"growth exponent from {first} to {last} threads {_interval(point, low, high)}"
    return Part(name, SUPPORTED if high < 1 else NOT_SUPPORTED,
                text if high < 1 else text + ", interval does not lie below 1")


def _tp_part(results, workload, lr, counts, context) -> Part:
    name = "finite tp trades dropped gradients for lower staleness"
    if not counts:
        return Part(name, NOT_TESTABLE, f"needs >= 2 threads on >= 2 cores; the runs had "
                                        f"{context.cores}")
    threads = counts[-1]
    bounded = runs_of(results, workload, "leashed:tp=0", threads, lr)
    unbounded = runs_of(results, workload, LEASHED, threads, lr)
    short = _too_few({"tp=0": bounded, "tp=inf": unbounded}, context.min_seeds)
    if short:
        return Part(name, NOT_TESTABLE, short)
    dropped = float(np.median([dropped_share(r) for r in bounded]))
    point, low, high = bootstrap_interval(
        [[mean_staleness(r) for r in unbounded], [mean_staleness(r) for r in bounded]],
        median_difference)
    text = (f"at {threads} threads tp=0 dropped {dropped:.2%} of gradients; mean staleness "
            f"tp=inf minus tp=0 {_interval(point, low, high, 3)}")
    holds = dropped > 0 and low > 0
    return Part(name, SUPPORTED if holds else NOT_SUPPORTED,
                text if holds else text + " (needs drops > 0 and an interval above 0)")


# -- claim 5: staleness --------------------------------------------------------------------

def _judge_staleness(results: Sequence[RunResult], workload: str, context: Context) -> Verdict:
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, LEASHED, context.cores)
    headers = ("threads", "strategy", "mean staleness", "p99", "max", "reads",
               "Leashed / lock mean (ratio [95% CI])")
    rows, parts = [], []
    for threads in counts:
        cells = {label: runs_of(results, workload, label, threads, lr)
                 for label in (LEASHED, LOCK, HOGWILD)}
        part, ratio = _leashed_over_lock(cells, threads, mean_staleness, context,
                                         "mean staleness",
                                         lambda high: high <= STALENESS_MARGIN,
                                         f", interval reaches above {STALENESS_MARGIN:g}")
        parts.append(part)
        for label, runs in cells.items():
            if runs:
                reads = "consistent" if label != HOGWILD else "inconsistent (torn)"
                rows.append((str(threads), label,
                             f"{np.median([mean_staleness(r) for r in runs]):.2f}",
                             str(int(np.median([r.staleness.get('p99') or 0 for r in runs]))),
                             str(max(r.staleness.get("max") or 0 for r in runs)), reads,
                             ratio if label == LEASHED else ""))
    if not counts:
        parts.append(Part("staleness", NOT_TESTABLE,
                          f"needs >= 2 threads on >= 2 cores; the runs had {context.cores}"))
    return Verdict(5, workload, combine(parts), CLAIMS[4].rule, tuple(parts), headers,
                   tuple(rows))


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Time to convergence",
          "Leashed-SGD reaches ε-convergence 20-80 % faster, up to 4x, than lock-based "
          "AsyncSGD and HOGWILD!, on MLP and CNN workloads, as threads grow.",
          f"At every thread count m >= 2 that gets a core of its own: the ratio of median "
          f"times to ε (baseline / Leashed, tp=inf) over >= {MIN_SEEDS} seeds, with a bootstrap "
          f"95 % interval that lies above 1, against both lock and hogwild (a run that never "
          f"reached ε counts at its time limit). 'As threads grow': the smaller of the two "
          f"ratios is no lower at the largest such m than at the smallest, which needs two "
          f"such m, so >= 4 cores.",
          "Time to ε against threads: median, interquartile range and every seed; a run that "
          "did not reach ε is a cross at its time limit.",
          _plan_speed, _judge_speed),
    Claim(2, "Stability",
          "Leashed-SGD is less sensitive to hyper-parameters: across step sizes and seeds it "
          "converges more often and with less spread in time to ε.",
          f"At the largest thread count within the cores, over >= 2 step sizes x >= {MIN_SEEDS} "
          f"seeds, against lock and hogwild each: supported if the success-rate difference "
          f"(Leashed - baseline) has a bootstrap 95 % interval above 0; or, when success rates "
          f"are equal within noise and Leashed's is not lower, if the baseline's relative "
          f"spread of time to ε (IQR / median, per step size, pooled) over Leashed's has an "
          f"interval above 1. Not supported if Leashed converges less often (interval below "
          f"0) or shows no smaller spread.",
          "Left: share of runs that reached ε at each step size. Right: time to ε of the "
          "converged runs (every seed).",
          _plan_stability, _judge_stability),
    Claim(3, "Memory",
          "Leashed-SGD's dynamic memory management allocates only when needed and reduces the "
          "overall memory footprint (lock-based keeps one shared vector plus a copy per "
          "thread).",
          f"At every thread count m >= 2 (beyond the cores too: memory does not need a core "
          f"per thread): the ratio of median time-averaged live parameter bytes (Leashed / "
          f"lock; sampled by the monitor every poll) over >= {MIN_SEEDS} seeds has a bootstrap "
          f"95 % interval below 1.",
          "Left: live parameter vectors over time (first seed of each strategy at the largest "
          "thread count). Right: time-averaged live vectors against threads (median over "
          "seeds).",
          _plan_memory, _judge_memory),
    Claim(4, "Contention regulation",
          "With more threads, Leashed-SGD's failed-CAS rate and the persistence bound regulate "
          "contention: failures per update grow sub-linearly with threads, and a finite tp "
          "trades dropped gradients for lower staleness.",
          f"(a) Between the smallest and largest thread counts >= 2 that each get a core "
          f"(>= 4 cores), the exponent of the growth of median failed CAS per update has a "
          f"bootstrap 95 % interval below 1. (b) At the largest such count, tp=0 drops a share "
          f"of gradients > 0 and its median mean staleness is lower than tp=inf's (interval of "
          f"the difference above 0). >= {MIN_SEEDS} seeds per cell.",
          "Failed CAS per update and dropped share of gradients against threads, per "
          "persistence bound tp; the shaded thread counts exceed the cores (time-shared).",
          _plan_contention, _judge_contention),
    Claim(5, "Staleness",
          "Each strategy's staleness distribution, and how consistency changes it: Leashed-SGD's "
          "τ is exact (every read is the version it names) and no larger than lock-based "
          "AsyncSGD's; HOGWILD!'s reads are inconsistent, so its τ only counts updates.",
          f"At every thread count m >= 2 that gets a core: the ratio of median mean staleness "
          f"(Leashed / lock) over >= {MIN_SEEDS} seeds has a bootstrap 95 % interval whose upper "
          f"end is at most {STALENESS_MARGIN:g} (non-inferiority within 10 %).",
          "Staleness histograms (share of updates per doubling bin), one panel per strategy, "
          "one bar per thread count.",
          _plan_speed, _judge_staleness),  # the runs of claim 1
)
CLAIM_NUMBERS = tuple(claim.number for claim in CLAIMS)


def get_claim(number: int) -> Claim:
    return CLAIMS[number - 1]
