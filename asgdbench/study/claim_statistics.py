"""The statistics behind the claims' verdicts: paired seeds, censoring, intervals and power.

Runs of a reproduce plan go round by round, one seed per round, so the runs
of two strategies with the same seed ran next to each other under the same
machine load: they are analysed as *pairs*. A paired effect is the per-seed
difference ``d`` (for times, the log of the time ratio), summarised by the
Hodges-Lehmann estimate (the median of the Walsh averages ``(d_i + d_j)/2``)
with the exact distribution-free interval that inverts the Wilcoxon
signed-rank test. Unlike a bootstrap of a median of five, it neither
pretends to a confidence that five pairs cannot give (its achieved level is
reported) nor lets one outlier seed of ten move its ends.

Censoring. A run that never reached ε (timed out, stalled or diverged) has a
time to ε of *at least* its time limit. In a pair with one such run the log
ratio enters at that bound: its sign is exact (the converged run was the
faster) and its size understated, which pulls the estimate toward no effect.
Toward no effect is not toward a safe verdict (it is away from a claimed 20 %),
so the bound limits one end of the interval only: the end it cannot limit is
computed as if that difference were unbounded (``bounds``), and the interval
holds the interval of every completion of the censored values. A pair where
both runs are censored says nothing about which is faster; it is left out and
counted (``PairedEffect.uninformative``). Fewer than :data:`MIN_PAIRS`
informative pairs: not testable.

Intervals are two-sided at :data:`CONFIDENCE` (90 %): each end is a one-sided
test at 5 %, as in non-inferiority testing, so "the lower end exceeds x" is a
one-sided test of "the effect exceeds x" at 5 %. Power uses the same level.
A claim of several parts reads "contradicted" only on intervals at a level
adjusted for the number of its intervals (:func:`~asgdbench.study.verdicts.adjust`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.90
"""Two-sided level of every interval: each end is a one-sided test at 5 %."""
POWER = 0.80
MIN_PAIRS = 5
"""Informative seed pairs an effect needs: the Wilcoxon interval needs 5 pairs at 90 %."""
RESAMPLES = 4000
BOOTSTRAP_SEED = 20210517  # fixed: the same runs always give the same intervals
MAX_PLANNED_SEEDS = 60
POWER_SAMPLES = 4000
"""Monte Carlo samples behind :func:`detectable_shift` (its 80 % quantile to about 2 %)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval, and the confidence the interval actually has."""

    point: float
    low: float
    high: float
    confidence: float

    def text(self, digits: int = 2, transform: Callable[[float], float] = float) -> str:
        point, low, high = (transform(v) for v in (self.point, self.low, self.high))
        return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


@dataclass(frozen=True)
class PairedEffect:
    """The paired differences of one comparison, what was left out, and their interval."""

    differences: np.ndarray
    """Informative per-seed differences (censored ones at their bound)."""
    uninformative: int
    """Pairs where both runs were censored: left out."""
    censored: int
    """Informative pairs with one censored run (entered at the bound)."""
    unpaired: int
    """Runs whose seed has no partner in the other cell (or whose difference is NaN)."""
    interval: Interval | None
    """None: fewer than :data:`MIN_PAIRS` informative pairs."""
    bounds: np.ndarray | None = None
    """Per difference: 1 if the true one is at least it, -1 at most it, 0 exact (None: all 0)."""

    def at(self, confidence: float) -> Interval | None:
        """The interval of the same differences at another ``confidence`` (None: too few)."""
        if self.differences.size < MIN_PAIRS:
            return None
        return hodges_lehmann(self.differences, confidence, self.bounds)

    @property
    def spread(self) -> float:
        """Standard deviation of the differences (the pilot's noise, for planning)."""
        return float(np.std(self.differences, ddof=1)) if self.differences.size >= 2 else math.nan


def signed_rank_null(n: int) -> np.ndarray:
    """P(T = t) for t = 0 .. n(n+1)/2, T the Wilcoxon signed-rank statistic of n pairs, no ties."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts / 2.0 ** n


def walsh_averages(values: np.ndarray) -> np.ndarray:
    rows, cols = np.triu_indices(values.size)
    return np.sort((values[rows] + values[cols]) / 2)


def hodges_lehmann(values: Sequence[float], confidence: float = CONFIDENCE,
                   bounds: Sequence[int] | None = None) -> Interval | None:
    """Median of the Walsh averages and the exact interval inverting the signed-rank test.

    The interval is ``[A_c, A_{N+1-c}]`` over the sorted Walsh averages, ``c``
    the largest with ``P(T <= c - 1) <= (1 - confidence) / 2``; its achieved
    confidence ``1 - 2 P(T <= c - 1)`` is returned. None when even the widest
    interval (the extreme Walsh averages) falls short of ``confidence``.
    ``bounds`` (censored values, see :class:`PairedEffect`): the low end takes
    each "at most" value as -inf, the high end each "at least" value as +inf;
    both ends are monotone in every value, so the interval of any completion
    lies within.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    averages = walsh_averages(values)
    tail = np.cumsum(signed_rank_null(values.size))
    c = int(np.searchsorted(tail, (1 - confidence) / 2, side="right"))
    if c < 1:
        return None
    achieved = 1 - 2 * tail[c - 1]
    low, high = averages[c - 1], averages[averages.size - c]
    if bounds is not None:
        bounds = np.asarray(bounds)
        low = walsh_averages(np.where(bounds < 0, -math.inf, values))[c - 1]
        high = walsh_averages(np.where(bounds > 0, math.inf, values))[averages.size - c]
    return Interval(float(np.median(averages)), float(low), float(high), float(achieved))


Pairs = dict[int, tuple[float, bool]]
"""Per seed: a run's value and whether it is censored (a lower bound: the time limit)."""


def paired_differences(first: Pairs, second: Pairs,
                       difference: Callable[[float, float], float] = lambda a, b: a - b,
                       ) -> tuple[dict[int, tuple[float, int]], int, int, int]:
    """Per shared seed, ``difference(first, second)`` and its bound, censoring as documented above.

    ``difference`` rises with its first argument and falls with its second, so
    a censored first run (a lower bound) makes the difference a lower bound
    (1), a censored second run an upper bound (-1). Also: pairs left out (both
    censored), pairs with one censored run, runs whose seed has no partner.
    """
    differences, uninformative, censored = {}, 0, 0
    for seed in sorted(set(first) & set(second)):
        (a, a_censored), (b, b_censored) = first[seed], second[seed]
        if a_censored and b_censored:
            uninformative += 1
            continue
        censored += a_censored or b_censored
        differences[seed] = (difference(a, b), int(a_censored) - int(b_censored))
    return differences, uninformative, censored, len(set(first) ^ set(second))


def paired_effect(first: Pairs, second: Pairs,
                  difference: Callable[[float, float], float] = lambda a, b: a - b,
                  ) -> PairedEffect:
    """The :class:`PairedEffect` of ``difference(first, second)`` over the seeds both have."""
    by_seed, uninformative, censored, unpaired = paired_differences(first, second, difference)
    values = [value for value, _ in by_seed.values()]
    bounds = [bound for _, bound in by_seed.values()]
    return effect_of(values, uninformative, censored, unpaired, bounds)


def effect_of(differences: Sequence[float], uninformative: int = 0, censored: int = 0,
              unpaired: int = 0, bounds: Sequence[int] | None = None) -> PairedEffect:
    values = np.asarray(differences, dtype=float)
    bounds = None if bounds is None else np.asarray(bounds, dtype=int)
    known = ~np.isnan(values)  # a NaN would sort last and act as +inf on both ends
    if not known.all():
        unpaired += int((~known).sum())
        values, bounds = values[known], None if bounds is None else bounds[known]
    interval = hodges_lehmann(values, bounds=bounds) if values.size >= MIN_PAIRS else None
    return PairedEffect(values, uninformative, censored, unpaired, interval, bounds)


def log_ratio(a: float, b: float) -> float:
    return math.log(a) - math.log(b)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The sample median and its distribution-free interval (order statistics, sign test)."""
    values = np.sort(np.asarray(values, dtype=float))
    n = values.size
    if n == 0:
        return None
    from scipy import stats  # here, not at import: the CLI starts without SciPy

    tail = stats.binom.cdf(np.arange(n), n, 0.5)
    c = int(np.searchsorted(tail, (1 - confidence) / 2, side="right"))
    if c < 1:
        return Interval(float(np.median(values)), -math.inf, math.inf, 1.0)
    return Interval(float(np.median(values)), float(values[c - 1]), float(values[n - c]),
                    float(1 - 2 * tail[c - 1]))


def bootstrap(groups: Sequence[Sequence[float]], statistic: Callable[..., np.ndarray],
              confidence: float = CONFIDENCE) -> Interval:
    """``statistic(*groups)`` and a seeded percentile interval, each group resampled on its own.

    ``statistic`` reduces the last axis, so every resample goes at once. A
    resample whose statistic is infinite is kept (the ends take the nearest
    order statistic, never an interpolation between infinities); only NaN ones
    are dropped, and none should arise from the statistics used here.
    """
    arrays = [np.asarray(group, dtype=float) for group in groups]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = [array[rng.integers(0, array.size, (RESAMPLES, array.size))] for array in arrays]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.asarray(statistic(*resampled), dtype=float)
        point = float(statistic(*arrays))
    values = values[~np.isnan(values)]
    if not values.size:
        return Interval(point, math.nan, math.nan, confidence)
    tail = 100 * (1 - confidence) / 2
    low = np.percentile(values, tail, method="lower")
    high = np.percentile(values, 100 - tail, method="higher")
    return Interval(point, float(low), float(high), confidence)


def proportion_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """Exact (Clopper-Pearson) interval of a binomial proportion (``scipy.stats.binomtest``)."""
    from scipy import stats

    ci = stats.binomtest(successes, trials).proportion_ci(confidence, method="exact")
    return Interval(successes / trials, float(ci.low), float(ci.high), confidence)


# -- power -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def detectable_shift(pairs: int, power: float = POWER, confidence: float = CONFIDENCE) -> float:
    """The shift, in standard deviations of normal differences, that the interval's low end
    clears with ``power``: a seeded Monte Carlo of the exact test, so the same every time.

    The low end of ``d + shift`` is the low end of ``d`` plus ``shift``, so the
    test rejects exactly when ``shift`` exceeds minus the low end of the noise:
    the shift is that quantity's ``power`` quantile. No t or efficiency
    approximation, which at 5 pairs (the interval [min, max], one-sided level
    1/32 rather than 5 %) promised 80 % and delivered 66 %.
    """
    tail = np.cumsum(signed_rank_null(pairs))
    c = int(np.searchsorted(tail, (1 - confidence) / 2, side="right"))
    if c < 1:
        return math.inf
    noise = np.random.default_rng(BOOTSTRAP_SEED).standard_normal((POWER_SAMPLES, pairs))
    rows, cols = np.triu_indices(pairs)
    lows = np.partition((noise[:, rows] + noise[:, cols]) / 2, c - 1, axis=1)[:, c - 1]
    return float(np.quantile(-lows, power))


def minimum_detectable_effect(spread: float, pairs: int, power: float = POWER,
                              confidence: float = CONFIDENCE) -> float:
    """Smallest paired effect (in the differences' units) whose interval's low end clears 0
    with ``power``, given the differences' standard deviation ``spread`` (normal errors).

    inf when ``pairs`` < 2 or the spread is unknown.
    """
    if pairs < 2 or not math.isfinite(spread):
        return math.inf
    return float(detectable_shift(pairs, power, confidence) * spread)


def seeds_needed(spread: float, effect: float, power: float = POWER,
                 confidence: float = CONFIDENCE) -> int | None:
    """Seeds (pairs) for a paired effect of ``effect`` to be detected with ``power``.

    At least :data:`MIN_PAIRS`; None when more than :data:`MAX_PLANNED_SEEDS`
    would be needed, or the spread is unknown.
    """
    if not math.isfinite(spread) or effect <= 0:
        return None
    for pairs in range(MIN_PAIRS, MAX_PLANNED_SEEDS + 1):
        if minimum_detectable_effect(spread, pairs, power, confidence) <= effect:
            return pairs
    return None
