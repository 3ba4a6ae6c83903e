"""How claims 1-3 (speed, stability, memory) are judged from run records: pure functions,
no runs, no rendering; claims 4 and 5 in :mod:`~asgdbench.study.claim_judges_contention`.

Every comparison pairs runs by seed (see :mod:`~asgdbench.study.claim_statistics`)
and turns an interval into one of the four verdicts of
:mod:`~asgdbench.study.verdicts`. Each judge returns the parts and the table
behind them; :mod:`~asgdbench.study.claims` wraps them into a Verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from asgdbench.engine.choice import Choice
from asgdbench.engine.run_result import RunResult
from asgdbench.study.claim_runs import (
    BASELINES,
    LEASHED,
    LOCK,
    Context,
    by_seed,
    censored,
    is_run_of,
    mean_live_bytes,
    runs_of,
    thread_counts_run,
    time_to_epsilon,
    too_few,
)
from asgdbench.study.claim_statistics import (
    CONFIDENCE,
    MIN_PAIRS,
    Interval,
    PairedEffect,
    bootstrap,
    effect_of,
    log_ratio,
    median_interval,
    paired_differences,
    paired_effect,
    proportion_interval,
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
    either_way,
    ratio_text,
    untestable_effect,
)

CLAIMED_SPEEDUP = 1.2
"""Claim 1's smallest claimed effect: 20 % faster (the paper: 20-80 %, up to 4x)."""
MEMORY_REDUCTION = 0.9
"""Claim 3: a reduction of at least 10 % (asgdbench's threshold; the paper gives no number)."""
GROWTH_MARGIN = 1.2
"""Claim 1's "as threads grow": the advantage may not shrink by 20 % or more."""

Table = tuple[tuple[str, ...], list[tuple[str, ...]]]


def rechecked(effect: PairedEffect, rule: Callable[[Interval], str]) -> Callable[[float], str]:
    """``rule`` applied to ``effect``'s interval at another confidence (for
    :func:`~asgdbench.study.verdicts.adjust`); too few pairs for that level: inconclusive."""
    def at_level(confidence: float) -> str:
        interval = effect.at(confidence)
        return INCONCLUSIVE if interval is None else rule(interval)
    return at_level


# -- claim 1: time to ε -----------------------------------------------------------------------

def judge_speed(results: Sequence[RunResult], workload: str, context: Context
                ) -> tuple[list[Part], Table]:
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, LEASHED, context.cores)
    headers = ("threads", "strategy", "median time to ε [s] (unreached: at limit)", "converged",
               "time ratio to Leashed, per seed pair (HL [90% CI])", "pairs")
    rows, parts, per_seed = [], [], {}
    for threads in counts:
        leashed = runs_of(results, workload, LEASHED, threads, lr)
        for label in (LEASHED, *BASELINES):
            runs = leashed if label == LEASHED else runs_of(results, workload, label, threads, lr)
            ratio, pairs = "—", ""
            if label != LEASHED:
                name = f"faster than {label} at {threads} threads"
                if not runs:
                    parts.append(Part(name, NOT_TESTABLE, f"no {label} runs at {threads} threads"))
                else:
                    first = by_seed(runs, time_to_epsilon, censored)
                    second = by_seed(leashed, time_to_epsilon, censored)
                    per_seed[threads, label] = paired_differences(first, second, log_ratio)[0]
                    effect = paired_effect(first, second, log_ratio)
                    parts += speed_parts(effect, name)
                    ratio, pairs = ratio_text(effect.interval), effect_counts(effect)
            times = [time_to_epsilon(r) for r in runs]
            rows.append((str(threads), label.label, f"{np.median(times):.3g}" if times else "—",
                         f"{sum(r.converged for r in runs)}/{len(runs)}", ratio, pairs))
    if not counts:
        parts.append(Part("speed-up", NOT_TESTABLE,
                          f"needs >= 2 threads on >= 2 cores; the runs had {context.cores}"))
    parts.append(growth_part(per_seed, counts, context))
    return parts, (headers, rows)


def speed_parts(effect: PairedEffect, name: str) -> list[Part]:
    """Direction (faster at all) and magnitude (by >= 20 %) of one paired time ratio."""
    if effect.interval is None:
        return [Part(name, NOT_TESTABLE, untestable_effect(effect))]
    text = (f"time ratio baseline / Leashed {ratio_text(effect.interval)} "
            f"({effect.interval.confidence:.1%} interval) over {effect_counts(effect)}")
    parts = []
    for what, claimed in ((name, 0.0), (f"{name}, by >= 20 % (the paper: 20-80 %, up to 4x)",
                                        math.log(CLAIMED_SPEEDUP))):
        verdict = at_least(effect.interval, claimed)
        reason = (text if verdict != INCONCLUSIVE
                  else f"{text}; {detectable(effect, claimed=claimed)}")
        parts.append(Part(what, verdict, reason, interval=name,
                          at_level=rechecked(effect, lambda i, c=claimed: at_least(i, c))))
    return parts


def growth_part(per_seed: dict[tuple[int, str], dict[int, tuple[float, int]]], counts: list[int],
                context: Context) -> Part:
    """The advantage at the largest count against the smallest, per seed (the smaller ratio)."""
    name = "advantage holds as threads grow"
    if len(counts) < 2:
        return Part(name, NOT_TESTABLE, f"needs two thread counts >= 2 that each get a core, so "
                                        f">= 4 cores; the runs had {context.cores}")
    first, last = counts[0], counts[-1]
    if any((m, b) not in per_seed for m in (first, last) for b in BASELINES):
        return Part(name, NOT_TESTABLE, f"needs both baselines at {first} and {last} threads")
    seeds = set.intersection(*(set(per_seed[m, b]) for m in (first, last) for b in BASELINES))
    changes, bounds = [], []
    for s in sorted(seeds):
        # a censored ratio bounds its minimum the same way; the change rises with the ratios
        # at the largest count and falls with those at the smallest
        directions = ({per_seed[last, b][s][1] for b in BASELINES}
                      | {-per_seed[first, b][s][1] for b in BASELINES}) - {0}
        if len(directions) > 1:
            continue  # bounded from both sides: no bound on the change
        changes.append(min(per_seed[last, b][s][0] for b in BASELINES)
                       - min(per_seed[first, b][s][0] for b in BASELINES))
        bounds.append(directions.pop() if directions else 0)
    effect = effect_of(changes, bounds=bounds)
    if effect.interval is None:
        return Part(name, NOT_TESTABLE, f"needs >= {MIN_PAIRS} seeds informative at both counts; "
                                        f"has {len(changes)}")
    verdict = at_least(effect.interval, -math.log(GROWTH_MARGIN))
    text = (f"change of the smaller ratio from {first} to {last} threads, per seed: "
            f"x{ratio_text(effect.interval)} (a fall by 20 % or more, below "
            f"x{1 / GROWTH_MARGIN:.2f}, contradicts it)")
    return Part(name, verdict, text if verdict != INCONCLUSIVE else
                f"{text}; {detectable(effect, claimed=-math.log(GROWTH_MARGIN))}",
                at_level=rechecked(effect, lambda i: at_least(i, -math.log(GROWTH_MARGIN))))


# -- claim 2: stability ------------------------------------------------------------------------

def log_spread(times: np.ndarray) -> np.ndarray:
    """Standard deviation of log time to ε along the last axis (0 for identical times)."""
    return np.std(np.log(times), axis=-1, ddof=1)


def judge_stability(results: Sequence[RunResult], workload: str, context: Context
                    ) -> tuple[list[Part], Table]:
    threads = max([r.config.threads for r in results if r.config.workload == workload
                   and is_run_of(r, LEASHED) and r.config.threads <= context.cores]
                  or [0])
    lrs = sorted({r.config.lr for r in results if r.config.workload == workload
                  and is_run_of(r, LEASHED) and r.config.threads == threads})
    headers = ("strategy", "step size", "converged", "median time to ε [s]",
               "spread (sd of log time)")
    cells = {label: {lr: runs_of(results, workload, label, threads, lr) for lr in lrs}
             for label in (LEASHED, *BASELINES)}
    rows = []
    for label, by_lr in cells.items():
        for lr, runs in by_lr.items():
            times = np.array([r.time_to_target_s for r in runs if r.converged])
            rows.append((label.label, f"{lr:g}", f"{len(times)}/{len(runs)}",
                         f"{np.median(times):.3g}" if times.size else "—",
                         f"{float(log_spread(times)):.2f}" if times.size >= 2 else "—"))
    if threads == 0 or len(lrs) < 2:
        return [Part("stability", NOT_TESTABLE,
                     f"needs >= 2 step sizes at a thread count within the {context.cores} cores; "
                     f"the runs have {len(lrs)}")], (headers, rows)
    short = too_few({f"{label} lr={lr:g}": runs for label, by_lr in cells.items()
                     for lr, runs in by_lr.items()}, context.min_seeds)
    if short:
        return [Part("stability", NOT_TESTABLE, short)], (headers, rows)
    return [stability_part(cells[LEASHED], cells[b], b) for b in BASELINES], (headers, rows)


def stability_part(leashed: dict[float, list[RunResult]], baseline: dict[float, list[RunResult]],
                   label: Choice) -> Part:
    """Success per (step size, seed) pair, then the spread of time to ε: either may show it.

    "More stable" holds if either measure shows Leashed better, a union of two
    hypotheses, so each measure is tested at half the error (Bonferroni): its
    interval at ``1 - (1 - CONFIDENCE) / 2``, 95 %, each end one-sided at 2.5 %.
    """
    ours_only = theirs_only = 0
    for lr in leashed:
        ours, theirs = (by_seed(runs, lambda r: float(r.converged)) for runs in
                        (leashed[lr], baseline[lr]))
        for seed in set(ours) & set(theirs):
            ours_only += ours[seed][0] > theirs[seed][0]
            theirs_only += theirs[seed][0] > ours[seed][0]
    any_converged = any(r.converged for cell in (leashed, baseline) for runs in cell.values()
                        for r in runs)
    both = [lr for lr in leashed
            if sum(r.converged for r in leashed[lr]) >= 3 and sum(r.converged for r in
                                                                   baseline[lr]) >= 3]
    # sorted: the seeded resamples then depend on the runs, not on the order they were
    # recorded in (a cluster records them as they finish)
    groups = [sorted(r.time_to_target_s for r in cell[lr] if r.converged)
              for lr in both for cell in (baseline, leashed)]

    def spread_difference(*resampled: np.ndarray) -> np.ndarray:
        pairs = [log_spread(resampled[2 * k]) - log_spread(resampled[2 * k + 1])
                 for k in range(len(both))]
        return np.mean(pairs, axis=0)

    def measures(confidence: float) -> tuple[str, str, str, str]:
        """Both measures' verdicts and texts, each at ``1 - (1 - confidence) / 2``."""
        level = 1 - (1 - confidence) / 2
        if ours_only + theirs_only:
            share = proportion_interval(ours_only, ours_only + theirs_only, level)
            success = at_least(share, 0.5)
            success_text = (f"of the {ours_only + theirs_only} (step size, seed) pairs where "
                            f"one converged and the other not, Leashed was the one in "
                            f"{ours_only}: share {share.text()} ({level:.0%} interval; 0.5: no "
                            f"difference)")
        elif not any_converged:
            success, success_text = NOT_TESTABLE, ("no run converged at any step size: needs "
                                                   "a longer time limit (a larger scale)")
        else:
            success, success_text = INCONCLUSIVE, "both converged on exactly the same pairs"
        if both:
            spread_interval = bootstrap(groups, spread_difference, level)
            spread = at_least(spread_interval, 0.0)
            spread_text = (f"spread of log time to ε, {label} minus Leashed, averaged over "
                           f"{len(both)} step sizes: {spread_interval.text()} ({level:.0%} "
                           f"bootstrap interval)")
        else:
            spread, spread_text = NOT_TESTABLE, "no step size where both converged 3 times"
        return success, success_text, spread, spread_text

    success, success_text, spread, spread_text = measures(CONFIDENCE)
    verdict = either_way(success, spread)
    by = [what for what, v in (("success", success), ("spread", spread)) if v == verdict]
    lead = (f"decided by {' and '.join(by)}; " if verdict in (SUPPORTED, CONTRADICTED)
            else "neither measure decides; ")
    return Part(f"vs {label}", verdict, f"{lead}success: {success} ({success_text}); "
                f"spread: {spread} ({spread_text})",
                at_level=lambda confidence: either_way(*measures(confidence)[::2]))


# -- claim 3: memory ---------------------------------------------------------------------------

def judge_memory(results: Sequence[RunResult], workload: str, context: Context
                 ) -> tuple[list[Part], Table]:
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, LEASHED, 10 ** 9)
    headers = ("threads", "strategy", "mean live vectors (median [90% CI])", "peak vectors",
               "mean live bytes", "Leashed / this, per seed pair (HL [90% CI])")
    rows, parts = [], []
    for threads in counts:
        leashed = runs_of(results, workload, LEASHED, threads, lr)
        for label in (LEASHED, *BASELINES):
            runs = leashed if label == LEASHED else runs_of(results, workload, label, threads, lr)
            if not runs:
                continue
            ratio = "—"
            if label != LEASHED:
                effect = paired_effect(by_seed(leashed, mean_live_bytes),
                                       by_seed(runs, mean_live_bytes), log_ratio)
                ratio = ratio_text(effect.interval)
                if label == LOCK:
                    parts.append(memory_part(effect, threads, context,
                                             too_few({LEASHED: leashed, LOCK: runs},
                                                     context.min_seeds)))
            live = median_interval([r.live_param_vectors.get("mean", r.peak_param_vectors)
                                    for r in runs])
            rows.append((str(threads), label.label, live.text(2) if live else "—",
                         str(max(r.peak_param_vectors for r in runs)),
                         _bytes(np.median([mean_live_bytes(r) for r in runs])), ratio))
        if not runs_of(results, workload, LOCK, threads, lr):
            parts.append(Part(f"{threads} threads", NOT_TESTABLE,
                              f"no {LOCK} runs at {threads} threads"))
    if not counts:
        parts.append(Part("memory", NOT_TESTABLE, "no Leashed runs with >= 2 threads"))
    return parts, (headers, rows)


def memory_part(effect: PairedEffect, threads: int, context: Context, short: str | None) -> Part:
    name = f"{threads} threads"
    if short or effect.interval is None:
        return Part(name, NOT_TESTABLE, short or untestable_effect(effect))
    verdict = at_most(effect.interval, math.log(MEMORY_REDUCTION))
    text = (f"time-averaged live bytes Leashed / {LOCK} {ratio_text(effect.interval)} over "
            f"{effect_counts(effect)}; a reduction needs the interval below "
            f"{MEMORY_REDUCTION:g}")
    return Part(name, verdict, text if verdict != INCONCLUSIVE else
                f"{text}; {detectable(effect, claimed=math.log(MEMORY_REDUCTION), side=-1)}",
                at_level=rechecked(effect, lambda i: at_most(i, math.log(MEMORY_REDUCTION))))


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.3g} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1024
    return ""
