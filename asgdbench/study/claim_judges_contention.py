"""How claims 4 and 5 are judged from run records: contention (failed CAS attempts as
threads grow, the persistence bound's trade) and staleness. Pure functions, as in
:mod:`~asgdbench.study.claim_judges` (claims 1-3), whose helpers they share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from asgdbench.engine.run_result import RunResult
from asgdbench.study.claim_judges import Table, rechecked
from asgdbench.study.claim_runs import (
    BASELINES,
    LEASHED,
    LEASHED_TP,
    LOCK,
    Context,
    by_seed,
    dropped_share,
    failures_per_update,
    is_run_of,
    runs_of,
    staleness_figure,
    thread_counts_run,
    too_few,
)
from asgdbench.study.claim_statistics import (
    MIN_PAIRS,
    PairedEffect,
    effect_of,
    median_interval,
    paired_effect,
)
from asgdbench.study.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    Part,
    at_least,
    at_most,
    detectable,
    effect_counts,
    no_worse,
    untestable_effect,
)

# -- claim 4: contention regulation ------------------------------------------------------------

def judge_contention(results: Sequence[RunResult], workload: str, context: Context
                     ) -> tuple[list[Part], Table]:
    lr = context.base_lr[workload]
    headers = ("strategy", "threads", "CAS failures / update (pooled)",
               "dropped share (median [90% CI])", "mean staleness (median [90% CI])", "runs")
    rows = []
    every = sorted({r.config.threads for r in results if r.config.workload == workload
                    and any(is_run_of(r, strategy) for strategy in LEASHED_TP)})
    for label in LEASHED_TP:
        for threads in every:
            runs = runs_of(results, workload, label, threads, lr)
            if runs:
                note = "" if threads <= context.cores else " (time-shared)"
                failures = sum((r.cas or {}).get("failures") or 0 for r in runs)
                updates = sum(r.updates_applied for r in runs)
                dropped = median_interval([dropped_share(r) for r in runs])
                stale = median_interval([staleness_figure(r, "mean") for r in runs])
                rows.append((label.label, f"{threads}{note}",
                             f"{failures / updates:.2e}" if updates else "—",
                             dropped.text(4) if dropped else "—",
                             stale.text(3) if stale else "—", str(len(runs))))
    counts = thread_counts_run(results, workload, LEASHED, context.cores)
    parts = [growth_exponent_part(results, workload, lr, counts, context),
             persistence_part(results, workload, lr, counts, context)]
    return parts, (headers, rows)


def growth_exponent_part(results, workload, lr, counts, context) -> Part:
    """Failed CAS per update ∝ threads^k: k per seed, from that seed's two runs.

    A seed's exponent is ``log(rate at the larger count / rate at the smaller)
    / log(larger / smaller)``, summarised like every paired effect (exact
    Wilcoxon / Hodges-Lehmann). A rate of zero has no logarithm and gets no
    floor: a seed with no failure at the smaller count has an exponent of +inf
    (it enters as a lower bound, so it can only widen the interval's high end),
    none at the larger count -inf (an upper bound); none at either says nothing
    about growth and is left out. No failure at the smaller count in any seed:
    not testable.
    """
    name = "failures per update grow sub-linearly"
    if len(counts) < 2:
        return Part(name, NOT_TESTABLE, f"needs two thread counts >= 2 that each get a core, so "
                                        f">= 4 cores; the runs had {context.cores}")
    first, last = counts[0], counts[-1]
    low, high = (by_seed(runs_of(results, workload, LEASHED, m, lr), failures_per_update)
                 for m in (first, last))
    seeds = sorted(s for s in set(low) & set(high)
                   if math.isfinite(low[s][0]) and math.isfinite(high[s][0]))
    if len(seeds) < context.min_seeds:
        return Part(name, NOT_TESTABLE, f"needs >= {context.min_seeds} seeds run at both "
                                        f"{first} and {last} threads; has {len(seeds)}")
    if not any(low[s][0] > 0 for s in seeds):
        return Part(name, NOT_TESTABLE, f"no failed CAS at {first} threads in any seed: growth "
                                        f"from zero has no exponent; needs more contention")
    with np.errstate(divide="ignore"):
        exponents = {s: (np.log(high[s][0]) - np.log(low[s][0])) / math.log(last / first)
                     for s in seeds if low[s][0] > 0 or high[s][0] > 0}
    finite = [k for k in exponents.values() if math.isfinite(k)]
    # an infinite exponent enters as a bound: any finite value below (above) it will do, as
    # each end of the interval is monotone in every value and the bound frees the other end
    below, above = (max(finite), min(finite)) if finite else (1.0, 1.0)
    values = [k if math.isfinite(k) else below if k > 0 else above for k in exponents.values()]
    bounds = [0 if math.isfinite(k) else 1 if k > 0 else -1 for k in exponents.values()]
    effect = effect_of(values, uninformative=len(seeds) - len(exponents),
                       censored=sum(b != 0 for b in bounds), bounds=bounds)
    if effect.interval is None:
        return Part(name, NOT_TESTABLE, f"needs >= {MIN_PAIRS} seeds with a failed CAS at "
                                        f"{first} or {last} threads; has {len(exponents)}")
    verdict = at_most(effect.interval, 1.0)
    unbounded = (f" ({sum(b > 0 for b in bounds)} seeds without failures at {first} threads, "
                 f"exponent inf; {sum(b < 0 for b in bounds)} without at {last}, -inf)"
                 if any(bounds) else "")
    text = (f"exponent of failed CAS per update from {first} to {last} threads, per seed: "
            f"{effect.interval.text()} ({effect.interval.confidence:.1%} interval) over "
            f"{effect.differences.size} seeds{unbounded}; 1 is linear growth")
    return Part(name, verdict, text if verdict != INCONCLUSIVE else
                f"{text}; {detectable(effect, as_ratio=False, claimed=1.0, side=-1)}",
                at_level=rechecked(effect, lambda i: at_most(i, 1.0)))


def persistence_part(results, workload, lr, counts, context) -> Part:
    name = "finite tp trades dropped gradients for lower staleness"
    if not counts:
        return Part(name, NOT_TESTABLE, f"needs >= 2 threads on >= 2 cores; the runs had "
                                        f"{context.cores}")
    threads = counts[-1]
    bounded = runs_of(results, workload, LEASHED_TP[0], threads, lr)
    unbounded = runs_of(results, workload, LEASHED, threads, lr)
    short = too_few({"tp=0": bounded, "tp=inf": unbounded}, context.min_seeds)
    if short:
        return Part(name, NOT_TESTABLE, short)
    dropped = median_interval([dropped_share(r) for r in bounded])
    effect = paired_effect(by_seed(unbounded, lambda r: staleness_figure(r, "mean")),
                           by_seed(bounded, lambda r: staleness_figure(r, "mean")))
    if effect.interval is None:
        return Part(name, NOT_TESTABLE, untestable_effect(effect))
    text = (f"at {threads} threads tp=0 dropped a share {dropped.text(4)} of gradients; mean "
            f"staleness tp=inf minus tp=0, per seed {effect.interval.text(3)}")
    lower = at_least(effect.interval, 0.0)
    if lower == CONTRADICTED:
        return Part(name, CONTRADICTED, text + ": tp=0's staleness is not lower",
                    at_level=rechecked(effect, lambda i: at_least(i, 0.0)))
    if max(dropped_share(r) for r in bounded) == 0:
        return Part(name, NOT_TESTABLE, text + ": tp=0 dropped nothing, so there was no "
                                               "contention to regulate; needs more threads")
    verdict = SUPPORTED if lower == SUPPORTED and dropped.low > 0 else INCONCLUSIVE
    return Part(name, verdict, text if verdict == SUPPORTED else
                f"{text}; {detectable(effect, as_ratio=False)}",
                at_level=rechecked(effect, lambda i: at_least(i, 0.0)))


# -- claim 5: staleness ------------------------------------------------------------------------

STALENESS_FIGURES = (("mean", "mean", 1), ("zero", "share at τ = 0", -1), ("p50", "median", 1),
                     ("p99", "p99", 1), ("max", "max", 1))
"""(figure, its name, +1 if larger is worse / -1 if smaller is worse); max is reported only."""
JUDGED_FIGURES = ("mean", "zero", "p50", "p99")


def judge_staleness(results: Sequence[RunResult], workload: str, context: Context
                    ) -> tuple[list[Part], Table]:
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, LEASHED, context.cores)
    headers = ("threads", "strategy", *(f"{title}" for _, title, _ in STALENESS_FIGURES))
    rows, parts = [], []
    for threads in counts:
        cells = {label: runs_of(results, workload, label, threads, lr)
                 for label in (LEASHED, *BASELINES)}
        for label, runs in cells.items():
            if runs:
                figures = [median_interval([staleness_figure(r, f) for r in runs])
                           for f, _, _ in STALENESS_FIGURES]
                rows.append((str(threads), f"{label} (median [90% CI])",
                             *(i.text(2) for i in figures)))
        for label in BASELINES:
            if not cells[label] or not cells[LEASHED]:
                continue
            effects = {f: paired_effect(*(by_seed(cells[x], lambda r, f=f: staleness_figure(r, f))
                                          for x in (LEASHED, label)))
                       for f, _, _ in STALENESS_FIGURES}
            rows.append((str(threads), f"Leashed minus {label} (HL [90% CI])",
                         *(e.interval.text(2) if e.interval else "—" for e in effects.values())))
            if label == LOCK:
                parts += staleness_parts(effects, threads)
        if not cells[LOCK]:
            parts.append(Part(f"{threads} threads", NOT_TESTABLE, f"no {LOCK} runs"))
    if not counts:
        parts.append(Part("staleness", NOT_TESTABLE,
                          f"needs >= 2 threads on >= 2 cores; the runs had {context.cores}"))
    return parts, (headers, rows)


def staleness_parts(effects: dict[str, PairedEffect], threads: int) -> list[Part]:
    parts = []
    for figure, title, worse in STALENESS_FIGURES:
        if figure not in JUDGED_FIGURES:
            continue
        effect = effects[figure]
        name = f"{title} no {'larger' if worse > 0 else 'smaller'} than {LOCK}'s at {threads} threads"
        if effect.interval is None:
            parts.append(Part(name, NOT_TESTABLE, untestable_effect(effect)))
            continue
        verdict = no_worse(effect.interval, worse)
        text = (f"Leashed minus lock, per seed pair {effect.interval.text(3)} over "
                f"{effect_counts(effect)}")
        parts.append(Part(name, verdict, text if verdict != INCONCLUSIVE else
                          f"{text}; {detectable(effect, as_ratio=False, side=-worse)}",
                          at_level=rechecked(effect, lambda i, w=worse: no_worse(i, w))))
    return parts

