"""The paper's claims as data: each one's statement, the runs it needs, and its verdict rule.

*Consistent Lock-free Parallel SGD for Fast and Stable Convergence*
(Bäckström et al., IPDPS 2021) makes five claims this harness can test; a sixth comes from its introduction, after
Niu et al. (2011): in the sparse regime HOGWILD!'s inconsistency costs little. Each
:class:`Claim` says which runs it needs at a :class:`Scale` on a machine with
a given number of cores, and judges them with a rule written in the report
next to the verdict. Verdicts are pure functions of run records
(:mod:`~asgdbench.study.claim_judges`, reading runs in
:mod:`~asgdbench.study.claim_runs`, statistics in
:mod:`~asgdbench.study.claim_statistics`, the four verdict words in
:mod:`~asgdbench.study.verdicts`): nothing here runs anything, so a test can
feed synthetic records and get each verdict. Intervals are seeded or exact,
so a report re-rendered from the same runs gives the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from asgdbench.engine.choice import Choice
from asgdbench.engine.run_result import RunResult
from asgdbench.study import claim_judges, claim_judges_contention, claim_judges_regime
from asgdbench.study.claim_runs import (  # noqa: F401  (re-exported: figures and tests)
    BASELINES,
    HOGWILD,
    LEASHED,
    LEASHED_TP,
    LOCK,
    MIN_SEEDS,
    SPARSE_HOGWILD,
    SPARSE_LOCK,
    SPARSE_RIVALS,
    Context,
    dropped_share,
    failures_per_update,
    is_run_of,
    mean_live_bytes,
    runs_of,
    time_to_epsilon,
)
from asgdbench.study.claim_statistics import CONFIDENCE, MIN_PAIRS
from asgdbench.study.verdicts import (  # noqa: F401  (re-exported)
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICTS,
    Part,
    Verdict,
    adjust,
    combine,
)


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
    first_workload_only: tuple[int, ...] = ()
    """Claims run on the first of their workloads only (quick: claim 2's step-size sweep and
    claim 6 on its first sparse workload, to fit)."""
    sparse_workloads: tuple[str, ...] = ("logreg-zipf", "mf-synthetic")
    """Workloads of the sparse-regime claims (6): generated from the seed, no download.
    ``--workloads`` replaces them with the sparse workloads it names."""
    planned_seeds: int | None = None
    """If set: ``seeds`` is a pilot; the seeds claim 1 needs (see reproduce.plan_seeds),
    at most this many, are run after it."""
    thread_counts: tuple[int, ...] = ()
    """If set: the thread counts run, instead of powers of two up to the cores (an experiment
    designed for another machine: benchmarks/scripts/scaling.py). The verdicts still count
    only those within the cores the runs had."""
    oversubscribed: tuple[int, ...] = ()
    """If set: the counts beyond the cores (claims 3 and 4), instead of twice the cores."""
    max_time_s: float | None = None
    """If set: each run's time limit in seconds, instead of ``max_time_factor``."""
    target_loss: float | None = None
    """If set: ε, instead of each workload's default target loss."""

    def with_seeds(self, seeds: int) -> Scale:
        return replace(self, seeds=seeds, planned_seeds=None)


SCALES = {
    # step sizes up to 64x the default: on mlp-digits 16x still converges under every
    # strategy and 64x is where they start to differ (diverge or stall)
    # quick: 8 seeds, the fewest with which a claim of up to 12 intervals can still be
    # contradicted at the Bonferroni level (5 seeds cannot exclude anything past 1/32 a side)
    # claim 6 at quick: logreg-zipf only, 3 strategies x 8 seeds of about 2 s each (the
    # workload's lock reaches ε in 2.1 s with 2 threads on 2 cores)
    "quick": Scale("quick", 8, (1.0, 16.0, 64.0), 1, 1 / 3, ("mlp-digits", "mlp-mnist"),
                   "at most 15 minutes on 2 cores", first_workload_only=(2, 6)),
    "standard": Scale("standard", 5, (0.25, 1.0, 4.0, 16.0, 64.0), 3, 0.5,
                      ("mlp-digits", "mlp-mnist", "cnn-mnist"),
                      "a 5-seed pilot, then the seeds claim 1 needs (at most 20); about an hour "
                      "on 2 cores per 5 seeds", planned_seeds=20),
    "paper": Scale("paper", 10, (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0), 16, 1.0,
                   ("mlp-digits", "mlp-mnist", "cnn-mnist", "lenet-mnist"),
                   "many hours; threads up to the cores and beyond"),
}


def parallel_threads(cores: int, scale: Scale) -> list[int]:
    """Thread counts that each get a core: powers of two from 2 and ``cores``, the largest kept
    (a scale's own ``thread_counts``, if it has them)."""
    if scale.thread_counts:
        return list(scale.thread_counts)
    counts = sorted({2 ** k for k in range(1, 16) if 2 ** k <= cores} | ({cores} - {1}))
    return counts[-scale.max_thread_counts:] if counts else [1]


def oversubscribed_threads(cores: int) -> int:
    """A thread count beyond the cores (twice them): memory and contention, not speed."""
    return 2 * cores


def oversubscribed_counts(cores: int, scale: Scale) -> tuple[int, ...]:
    """The counts beyond the cores a scale runs: its own, else twice the cores."""
    return scale.oversubscribed or (oversubscribed_threads(cores),)


@dataclass(frozen=True)
class Cells:
    """Part of a claim's grid: strategies x thread counts x step sizes (multiples), every seed."""

    strategies: tuple[Choice, ...]
    threads: tuple[int, ...]
    lr_factors: tuple[float, ...] = (1.0,)


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
    judges: Callable[[Sequence[RunResult], str, Context], tuple[list[Part], tuple]]
    note: str = ""
    """What a reader needs to read the figures right (claim 5: why the mean is about m - 1)."""
    regime: str = "dense"
    """Which workloads it runs on: "dense" (the scale's, MLP and CNN) or "sparse" (the
    scale's ``sparse_workloads``)."""

    def judge(self, results: Sequence[RunResult], workload: str, context: Context) -> Verdict:
        parts, (headers, rows) = self.judges(results, workload, context)
        parts = adjust(parts)
        return Verdict(self.number, workload, combine(parts), self.rule, tuple(parts),
                       tuple(headers), tuple(tuple(row) for row in rows))


def _plan_speed(scale: Scale, cores: int) -> list[Cells]:
    return [Cells((LOCK, HOGWILD, LEASHED), tuple(parallel_threads(cores, scale)))]


def _plan_stability(scale: Scale, cores: int) -> list[Cells]:
    return [Cells((LOCK, HOGWILD, LEASHED), (parallel_threads(cores, scale)[-1],),
                  scale.lr_factors)]


def _plan_memory(scale: Scale, cores: int) -> list[Cells]:
    threads = (*parallel_threads(cores, scale), *oversubscribed_counts(cores, scale))
    return [Cells((LOCK, HOGWILD, LEASHED), threads)]


def _plan_contention(scale: Scale, cores: int) -> list[Cells]:
    # one thread never contends: tp cannot matter there
    threads = tuple(count for count in (*parallel_threads(cores, scale),
                                        *oversubscribed_counts(cores, scale)) if count >= 2)
    return [Cells(LEASHED_TP, threads)]


def _plan_regime(scale: Scale, cores: int) -> list[Cells]:
    return [Cells((SPARSE_HOGWILD, *SPARSE_RIVALS), tuple(parallel_threads(cores, scale)))]


_PAIRED = (f"Runs are paired by seed (a round runs every cell of one seed, in a shuffled "
           f"order), >= {MIN_PAIRS} pairs; the {CONFIDENCE:.0%} interval is the exact "
           f"Hodges-Lehmann / Wilcoxon signed-rank interval of the per-pair differences, so "
           f"each end is a one-sided test at 5 %.")
_FOUR = ("supported: the interval lies on the claimed side; contradicted: it excludes the "
         "claimed effect; inconclusive: neither (with the smallest effect detectable at 80 % "
         "power); not testable here: with what it needs. The claim is supported if every part "
         "is (an intersection-union test: no adjustment needed), contradicted if any part is, "
         "where a part counts as contradicted only if its interval at the Bonferroni level "
         "1 - 10 %/k still excludes the claim, k the claim's intervals on the workload (the "
         "intervals shown are at 90 %; the part names the level that decided).")

CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Time to convergence",
          "Leashed-SGD reaches ε-convergence 20-80 % faster, up to 4x, than lock-based "
          "AsyncSGD and HOGWILD!, on MLP and CNN workloads, as threads grow.",
          f"At every thread count m >= 2 that gets a core, against each baseline as the "
          f"authors ran it ({LOCK}, {HOGWILD}): the time-to-ε ratio baseline / Leashed per seed "
          f"pair, in log. Direction: the interval lies above 1. Magnitude: above 1.2 (the "
          f"claim's lower end, 20 %; its 80 % and 4x are reported, not required). A run that "
          f"never reached ε is censored at its time limit: a pair with one such run enters at "
          f"that bound (sign exact, size understated: it limits one end of the interval, the "
          f"other is taken as unbounded), a pair with both is left out and "
          f"counted; all pairs censored is not testable. As threads grow: per seed, the smaller "
          f"of the two ratios at the largest m over that at the smallest; contradicted if the "
          f"interval lies below 1/1.2 (shrinks by 20 % or more), supported if above it; needs "
          f"two such m, so >= 4 cores. {_PAIRED} {_FOUR}",
          "Time to ε against threads: median, interquartile range and every seed; a run that "
          "did not reach ε is a cross at its time limit.",
          _plan_speed, claim_judges.judge_speed),
    Claim(2, "Stability",
          "Leashed-SGD is less sensitive to hyper-parameters: across step sizes and seeds it "
          "converges more often and with less spread in time to ε.",
          f"At the largest thread count within the cores, over >= 2 step sizes x >= "
          f"{MIN_SEEDS} seeds, against each baseline, two measures: success, paired by step "
          f"size and seed (of the pairs where exactly one converged, the share where it was "
          f"Leashed, exact binomial interval against 0.5; never pooled across "
          f"step sizes); spread, the standard deviation of log time to ε at each step size "
          f"where both converged >= 3 times, baseline minus Leashed, averaged over those step "
          f"sizes (bootstrap interval against 0; zero spread is fine). "
          f"More stable on either measure is the claim, so each is tested at half the error "
          f"(Bonferroni over the two: {1 - (1 - CONFIDENCE) / 2:.0%} intervals, each end "
          f"one-sided at 2.5 %). Supported if one measure shows Leashed better and the other "
          f"does not show it worse; contradicted in the mirror case; the reason names the "
          f"measure that decided. {_FOUR}",
          "Left: share of runs that reached ε at each step size. Right: time to ε of the "
          "converged runs (every seed).",
          _plan_stability, claim_judges.judge_stability),
    Claim(3, "Memory",
          "Leashed-SGD's dynamic memory management allocates only when needed and reduces the "
          "overall memory footprint (lock-based keeps one shared vector plus a copy per "
          "thread).",
          f"At every thread count m >= 2 (beyond the cores too: memory needs no core per "
          f"thread): time-averaged live parameter bytes (sampled by the monitor every poll) "
          f"Leashed / {LOCK}, the authors' lock-based variant (a copy allocated per step and "
          f"freed after the gradient), per seed pair; supported if the interval lies below "
          f"{claim_judges.MEMORY_REDUCTION:g} (a reduction of at least 10 %: asgdbench's "
          f"threshold, the paper gives no number), contradicted if it lies at or above it. "
          f"{HOGWILD} is shown too. {_PAIRED} {_FOUR}",
          "Left: live parameter vectors over time (first seed of each strategy at the largest "
          "thread count). Right: time-averaged live vectors against threads (median over "
          "seeds).",
          _plan_memory, claim_judges.judge_memory),
    Claim(4, "Contention regulation",
          "With more threads, Leashed-SGD's failed-CAS rate and the persistence bound regulate "
          "contention: failures per update grow sub-linearly with threads, and a finite tp "
          "trades dropped gradients for lower staleness.",
          f"(a) Between the smallest and largest thread counts >= 2 that each get a core "
          f"(>= 4 cores), the exponent k of failed CAS per update ∝ m^k per seed (the log of "
          f"that seed's rate ratio over the log of the thread ratio), its exact Hodges-Lehmann "
          f"/ Wilcoxon interval as for paired effects: supported if below 1, contradicted if "
          f"at or above 1; a seed without failures at one count has an infinite exponent and "
          f"enters as a bound, without failures at both it is left out; no failure at the "
          f"smaller count in any seed: not testable (no floor is added). (b) At the largest such count: tp=0 drops a share > 0 "
          f"(order-statistic interval of the median above 0) and lowers mean staleness against "
          f"tp=inf (per seed pair, interval above 0); contradicted if its staleness is shown "
          f"not lower. The table gives tp = 0, 1 and inf at every count. {_FOUR}",
          "Failed CAS per update and dropped share of gradients against threads, per "
          "persistence bound tp; the shaded thread counts exceed the cores (time-shared).",
          _plan_contention, claim_judges_contention.judge_contention),
    Claim(5, "Staleness",
          "Each strategy's staleness distribution, and how consistency changes it: Leashed-SGD's "
          "τ is exact (every read is the version it names) and no larger than lock-based "
          "AsyncSGD's; HOGWILD!'s reads are inconsistent, so its τ only counts updates.",
          f"At every thread count m >= 2 that gets a core: Leashed minus {LOCK}, per seed "
          f"pair, for the mean τ, the share at τ = 0, the median and the p99; each part is "
          f"supported if the interval's worse end is at most 0 (no larger; the share at 0 no "
          f"smaller), contradicted if the whole interval is worse, and no margin is added. "
          f"The max and the differences to {HOGWILD} are reported. Consistency of reads is not "
          f"measured here: `asgdbench check` holds each strategy to it with its torn-read "
          f"detector. {_PAIRED}",
          "Staleness histograms (share of updates per doubling bin), one panel per strategy, "
          "one bar per thread count.",
          _plan_speed, claim_judges_contention.judge_staleness,  # the runs of claim 1
          note="Why the mean τ is about m - 1 for every consistent strategy: a thread's "
               "read-to-update windows follow one another, so each update by one of the other "
               "m - 1 threads falls in exactly one window of this thread; averaged over "
               "updates, τ ≈ (m - 1) x (updates by others per own update) ≈ m - 1 whatever the "
               "synchronization. The mean compares little; the share at τ = 0, the median and "
               "the tail show how a strategy orders its updates."),
    Claim(6, "The sparse regime",
          "With sparse gradients, HOGWILD!'s inconsistency costs little and consistency costs "
          "much: HOGWILD! reaches ε no slower than lock-based AsyncSGD and Leashed-SGD (the "
          "paper's introduction, after Niu et al. 2011).",
          f"On each sparse workload (logreg-zipf, mf-synthetic: updates touch O(nnz) of the d "
          f"coordinates), at every thread count m >= 2 that gets a core, against {SPARSE_LOCK} "
          f"and {LEASHED}: the time-to-ε ratio {SPARSE_HOGWILD} / rival per seed pair, in log "
          f"(the plain strategies, whose sparse paths read and write only the support; "
          f"Leashed-SGD's publish copies all d by design). No slower is a non-inferiority "
          f"claim with a margin: supported if the interval lies below "
          f"{claim_judges_regime.NO_SLOWER_MARGIN:g} (at most 20 % slower: claim 1's smallest "
          f"claimed speed-up, so a gap too small to be a speed-up for Leashed-SGD is not a "
          f"slowdown for HOGWILD!; with no margin equal speeds could never be supported), "
          f"contradicted if it lies at or above it. Censoring as in claim 1: a pair with one "
          f"run that never reached ε enters at the bound, both: left out and counted. Bytes "
          f"written per update are reported (the cost of consistency), not judged. A workload "
          f"not registered here, or fewer than 2 cores: not testable. {_PAIRED} {_FOUR}",
          "Time to ε against threads on a sparse workload: median, interquartile range and "
          "every seed; a run that did not reach ε is a cross at its time limit.",
          _plan_regime, claim_judges_regime.judge_regime, regime="sparse"),
)
CLAIM_NUMBERS = tuple(claim.number for claim in CLAIMS)


def get_claim(number: int) -> Claim:
    return CLAIMS[number - 1]
