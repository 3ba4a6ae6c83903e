"""The claims' verdict rules on synthetic run records, and the statistics behind them.

Every edge case the rules once got wrong is a record set here with the verdict
it must give: all time-outs, a missing baseline either way, zero spread, zero
staleness, one outlier seed, ties. The statistics are checked against
independent references: scipy's exact Wilcoxon p-values, closed forms, and a
Monte Carlo of the power the seed planning promises. No run, no numba.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from claim_records import LR, WORKLOAD, record, seeds
from scipy import stats

from asgdbench.study import claim_statistics as cs
from asgdbench.study import claims
from asgdbench.study.claim_runs import HOGWILD, LEASHED, LOCK, SPARSE_HOGWILD, SPARSE_LOCK
from asgdbench.study.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    Part,
    Verdict,
    combine,
    overall,
)


def context(cores: int, min_seeds: int = 5) -> claims.Context:
    return claims.Context(cores, {WORKLOAD: LR}, min_seeds)


def judged(number: int, runs, cores: int) -> Verdict:
    return claims.get_claim(number).judge(runs, WORKLOAD, context(cores))


def parts(verdict: Verdict) -> dict[str, str]:
    return {part.name: part.verdict for part in verdict.parts}


# -- claim 1 ---------------------------------------------------------------------------------

def speed_runs(leashed, baseline, threads=(2,), count=5, baselines=(LOCK, HOGWILD)):
    """``leashed(seed, m)`` and ``baseline(seed, m)`` give each run's time (None: timed out)."""
    runs = []
    for m in threads:
        for label, time_of in ((LEASHED, leashed), *((b, baseline) for b in baselines)):
            for seed in range(count):
                time = time_of(seed, m)
                runs.append(record(label, m, seed, time=time or 1.0, converged=time is not None,
                                   max_time=10.0))
    return runs


def jitter(seed: int) -> float:
    """A fixed, seed-dependent factor within +-4 %: noise shared by a seed's pair of runs."""
    return 1 + 0.04 * math.sin(3.7 * seed + 1)


def test_claim_1_twice_as_fast_on_both_baselines_and_growing_is_supported():
    runs = speed_runs(lambda s, m: jitter(s), lambda s, m: 2 * (1 + (m > 2) / 4) * jitter(s),
                      threads=(2, 4))
    assert judged(1, runs, cores=4).verdict == SUPPORTED


def test_claim_1_a_2_percent_speed_up_is_not_supported_but_contradicts_the_magnitude():
    # 10 seeds: a contradiction must hold at the adjusted level (5 pairs cannot give it)
    runs = speed_runs(lambda s, m: jitter(s), lambda s, m: 1.02 * jitter(s) * (1 + 0.002 * s),
                      count=10)
    verdict = judged(1, runs, cores=2)
    found = parts(verdict)
    assert found[f"faster than {LOCK} at 2 threads"] == SUPPORTED  # the direction holds
    magnitude = next(name for name in found if name.startswith(f"faster than {LOCK}")
                     and "20 %" in name)
    assert found[magnitude] == CONTRADICTED  # but 2 % is not 20-80 %
    assert verdict.verdict == CONTRADICTED


def test_claim_1_slower_is_contradicted():
    runs = speed_runs(lambda s, m: 2 * jitter(s), lambda s, m: jitter(s), count=10)
    assert judged(1, runs, cores=2).verdict == CONTRADICTED


def test_claim_1_noisy_seeds_are_inconclusive_and_say_what_could_be_detected():
    noise = [0.6, 1.7, 0.9, 1.4, 0.7]
    runs = speed_runs(lambda s, m: noise[s], lambda s, m: 1.2 * noise[(s + 2) % 5])
    verdict = judged(1, runs, cores=2)
    assert verdict.verdict == INCONCLUSIVE
    assert "smallest effect detectable at 80 % power" in verdict.reason


def test_claim_1_all_runs_timing_out_is_not_testable():
    runs = speed_runs(lambda s, m: None, lambda s, m: None)
    verdict = judged(1, runs, cores=2)
    assert verdict.verdict == NOT_TESTABLE
    assert "timed out" in verdict.reason


def test_claim_1_a_missing_baseline_gives_the_same_verdict_whichever_it_is():
    faster = (lambda s, m: jitter(s), lambda s, m: 2 * jitter(s))
    without_lock = judged(1, speed_runs(*faster, threads=(2, 4), baselines=(HOGWILD,)), cores=4)
    without_hogwild = judged(1, speed_runs(*faster, threads=(2, 4), baselines=(LOCK,)), cores=4)
    assert without_lock.verdict == without_hogwild.verdict == NOT_TESTABLE
    assert f"no {LOCK} runs at 2 threads" in without_lock.reason
    assert f"no {HOGWILD} runs at 2 threads" in without_hogwild.reason


def test_claim_1_one_outlier_seed_moves_neither_the_estimate_nor_the_verdict_the_wrong_way():
    def leashed(seed, m):  # seed 3: Leashed 40x slower, once
        return jitter(seed) * (40 if seed == 3 else 1)
    five = judged(1, speed_runs(leashed, lambda s, m: 2 * jitter(s)), cores=2)
    assert five.verdict == INCONCLUSIVE  # 4 of 5 pairs: not enough to rule the outlier out
    ratio = next(row[4] for row in five.rows if row[1] == LOCK.label)
    assert 1.5 < float(ratio.split()[0]) < 2.5  # the estimate stays near 2x
    ten = judged(1, speed_runs(leashed, lambda s, m: 2 * jitter(s), count=10), cores=2)
    assert parts(ten)[f"faster than {LOCK} at 2 threads"] == SUPPORTED


@pytest.mark.parametrize("at_four, verdict", [(2.0, SUPPORTED), (1.99, SUPPORTED),
                                              (1.4, CONTRADICTED)])
def test_claim_1_holding_as_threads_grow_allows_ties_and_refutes_a_fall(at_four, verdict):
    runs = speed_runs(lambda s, m: jitter(s),
                      lambda s, m: (2.0 if m == 2 else at_four) * jitter(s) * (1 + 0.001 * s),
                      threads=(2, 4), count=10)
    assert parts(judged(1, runs, cores=4))["advantage holds as threads grow"] == verdict


def test_claim_1_a_censored_pair_enters_at_its_bound_and_both_censored_are_counted():
    def baseline(seed, m):
        return None if seed in (0, 1) else 2 * jitter(seed)

    def leashed(seed, m):
        return None if seed == 0 else jitter(seed)
    runs = speed_runs(leashed, baseline, count=7)
    verdict = judged(1, runs, cores=2)
    assert parts(verdict)[f"faster than {LOCK} at 2 threads"] == SUPPORTED
    assert "1 with one run censored" in verdict.reason
    assert "1 with both censored, left out" in verdict.reason


# -- claim 2 ---------------------------------------------------------------------------------

def stability_runs(success, times, lrs=(LR, 4 * LR), count=5):
    """``success(label, lr, seed)`` and ``times(label, lr, seed)`` per run."""
    return [record(label, 2, seed, lr=lr, time=times(label, lr, seed),
                   converged=success(label, lr, seed))
            for lr in lrs for label in (LEASHED, LOCK, HOGWILD) for seed in range(count)]


def test_claim_2_zero_spread_for_leashed_is_the_best_case_not_a_failure():
    verdict = judged(2, stability_runs(lambda *a: True,
                                       lambda label, lr, s: 1.0 if label == LEASHED
                                       else 1.0 + 0.3 * s), cores=2)
    assert verdict.verdict == SUPPORTED
    assert "nan" not in verdict.reason and "decided by spread" in verdict.reason


def test_claim_2_names_success_when_success_decides():
    def success(label, lr, seed):
        return label == LEASHED or lr == LR
    verdict = judged(2, stability_runs(success, lambda label, lr, s: 1.0 + 0.5 * s,
                                       lrs=(LR, 4 * LR, 8 * LR), count=5), cores=2)
    assert verdict.verdict == SUPPORTED
    assert "decided by success" in verdict.reason


def test_claim_2_converging_less_often_is_contradicted():
    def success(label, lr, seed):
        return label != LEASHED or lr == LR
    verdict = judged(2, stability_runs(success, lambda label, lr, s: 1.0 + 0.1 * s,
                                       lrs=(LR, 4 * LR, 8 * LR)), cores=2)
    assert verdict.verdict == CONTRADICTED


def test_claim_2_nothing_converging_is_not_testable():
    verdict = judged(2, stability_runs(lambda *a: False, lambda *a: 1.0), cores=2)
    assert verdict.verdict == NOT_TESTABLE
    assert "no run converged" in verdict.reason


def test_claim_2_one_step_size_is_not_testable():
    verdict = judged(2, stability_runs(lambda *a: True, lambda *a: 1.0, lrs=(LR,)), cores=2)
    assert verdict.verdict == NOT_TESTABLE


# -- claim 3 ---------------------------------------------------------------------------------

def memory_runs(leashed_live, lock_live, threads=(2, 4), count=5):
    runs = []
    for m in threads:
        runs += seeds(lambda s, j: record(LEASHED, m, s, live_vectors=leashed_live(m) + j), count)
        runs += seeds(lambda s, j: record(LOCK, m, s, live_vectors=lock_live(m) + 2 * j), count)
    return runs


def test_claim_3_verdicts_against_the_authors_lock():
    assert judged(3, memory_runs(lambda m: 2.0, lambda m: 1 + 0.8 * m), cores=2).verdict \
        == SUPPORTED
    # a 3 % reduction is not the claimed reduction of the footprint
    assert judged(3, memory_runs(lambda m: 0.97 * (1 + 0.8 * m), lambda m: 1 + 0.8 * m,
                                 count=10), cores=2).verdict == CONTRADICTED
    assert judged(3, memory_runs(lambda m: 2.0, lambda m: 3.0, count=3), cores=2).verdict \
        == NOT_TESTABLE


# -- claim 4 ---------------------------------------------------------------------------------

def contention_runs(failures, tp0_staleness=0.8, dropped=0.02, threads=(2, 4), count=5):
    runs = []
    for m in threads:
        runs += seeds(lambda s, j: record(LEASHED, m, s, failures=failures(m, s),
                                          staleness=1.5 + j), count)
        runs += seeds(lambda s, j: record("leashed:tp=0", m, s, failures=failures(m, s),
                                          dropped_share=dropped, staleness=tp0_staleness + j),
                      count)
        runs += seeds(lambda s, j: record("leashed:tp=1", m, s, failures=failures(m, s),
                                          dropped_share=dropped / 2, staleness=1.2 + j), count)
    return runs


def test_claim_4_growth_exponent_verdicts():
    sub = contention_runs(lambda m, s: (100 if m == 2 else 150) + s)  # 1.5x for 2x threads
    assert judged(4, sub, cores=4).verdict == SUPPORTED
    sup = contention_runs(lambda m, s: (100 if m == 2 else 500) + s, count=10)  # 5x for 2x
    assert judged(4, sup, cores=4).verdict == CONTRADICTED


def test_claim_4_failures_from_zero_have_no_exponent_and_no_floor_invents_one():
    runs = contention_runs(lambda m, s: 0 if m == 2 else 1)  # 0 -> 1e-4 per update
    verdict = judged(4, runs, cores=4)
    assert parts(verdict)["failures per update grow sub-linearly"] == NOT_TESTABLE
    assert "no failed CAS at 2 threads" in verdict.reason


def test_claim_4_tp_part_and_its_table_cover_tp_0_1_and_inf():
    verdict = judged(4, contention_runs(lambda m, s: 100, threads=(2,)), cores=2)
    assert [part.verdict for part in verdict.parts] == [NOT_TESTABLE, SUPPORTED]
    assert {row[0] for row in verdict.rows} == {"leashed:tp=0", "leashed:tp=1", LEASHED.label}
    higher = judged(4, contention_runs(lambda m, s: 100, tp0_staleness=3.0, threads=(2,),
                                       count=10), cores=2)
    assert higher.parts[1].verdict == CONTRADICTED


# -- claim 5 ---------------------------------------------------------------------------------

def staleness_runs(leashed: dict, lock: dict, count: int = 5):
    runs = []
    for label, figures in ((LEASHED, leashed), (LOCK, lock), (HOGWILD, lock)):
        runs += seeds(lambda s, j, f=figures, a=label: record(
            a, 2, s, staleness=f.get("mean", 1.0) + j * f.get("jitter", 1),
            zero_share=f.get("zero", 0.5), p50=f.get("p50", 1), p99=f.get("p99", 4),
            max_staleness=f.get("max", 20)), count)
    return runs


def test_claim_5_equal_distributions_are_supported():
    assert judged(5, staleness_runs({}, {}), cores=2).verdict == SUPPORTED


def test_claim_5_zero_staleness_on_both_sides_is_supported_without_nan():
    zero = {"mean": 0.0, "zero": 1.0, "p50": 0, "p99": 0, "max": 0, "jitter": 0}
    verdict = judged(5, staleness_runs(zero, zero), cores=2)
    assert verdict.verdict == SUPPORTED
    assert "nan" not in verdict.reason


def test_claim_5_a_mean_3_percent_above_locks_contradicts_no_larger():
    verdict = judged(5, staleness_runs({"mean": 1.03}, {"mean": 1.0}, count=10), cores=2)
    assert verdict.verdict == CONTRADICTED
    assert parts(verdict)[f"mean no larger than {LOCK}'s at 2 threads"] == CONTRADICTED


def test_claim_5_fewer_updates_at_zero_staleness_contradicts_it():
    verdict = judged(5, staleness_runs({"zero": 0.77}, {"zero": 0.97}, count=10), cores=2)
    assert parts(verdict)[f"share at τ = 0 no smaller than {LOCK}'s at 2 threads"] \
        == CONTRADICTED
    assert any(row[1].startswith("Leashed minus") for row in verdict.rows)


def test_claim_5_without_a_core_per_thread_is_not_testable():
    assert judged(5, staleness_runs({}, {}), cores=1).verdict == NOT_TESTABLE


# -- claim 6 ---------------------------------------------------------------------------------

def regime_runs(hogwild, rival, threads=(2,), count=5, rivals=(SPARSE_LOCK, LEASHED)):
    """``hogwild(seed, m)`` and ``rival(seed, m)`` give each run's time (None: timed out)."""
    runs = []
    for m in threads:
        for label, time_of in ((SPARSE_HOGWILD, hogwild), *((r, rival) for r in rivals)):
            for seed in range(count):
                time = time_of(seed, m)
                runs.append(record(label, m, seed, time=time or 1.0, converged=time is not None,
                                   max_time=10.0))
    return runs


def test_claim_6_equally_fast_is_no_slower_which_a_margin_of_zero_could_never_show():
    verdict = judged(6, regime_runs(lambda s, m: jitter(s), lambda s, m: jitter(s)), cores=2)
    assert verdict.verdict == SUPPORTED
    assert set(parts(verdict)) == {f"HOGWILD! no slower than {SPARSE_LOCK} at 2 threads",
                                   f"HOGWILD! no slower than {LEASHED} at 2 threads"}
    # 10 % slower is within the margin (claim 1's 20 %): still no slower
    slower = judged(6, regime_runs(lambda s, m: 1.1 * jitter(s) * (1 + 0.002 * s),
                                   lambda s, m: jitter(s)), cores=2)
    assert slower.verdict == SUPPORTED
    assert "below 1.2" in slower.reason


def test_claim_6_hogwild_half_again_as_slow_is_contradicted_at_the_adjusted_level():
    runs = regime_runs(lambda s, m: 1.5 * jitter(s) * (1 + 0.002 * s), lambda s, m: jitter(s),
                       count=10)
    verdict = judged(6, runs, cores=2)
    assert verdict.verdict == CONTRADICTED
    assert "95.0% level too" in verdict.reason  # 2 intervals: Bonferroni on the contradiction
    ratio = next(row[5] for row in verdict.rows if row[1] == SPARSE_LOCK.label)
    assert 1.45 < float(ratio.split()[0]) < 1.55


def test_claim_6_noise_around_the_margin_is_inconclusive_and_says_what_could_be_detected():
    noise = [0.6, 1.7, 0.9, 1.4, 0.7]
    verdict = judged(6, regime_runs(lambda s, m: 1.2 * noise[s],
                                    lambda s, m: noise[(s + 2) % 5]), cores=2)
    assert verdict.verdict == INCONCLUSIVE
    assert "smallest effect detectable at 80 % power" in verdict.reason


def test_claim_6_a_rival_that_never_reached_epsilon_bounds_the_ratio_and_both_are_left_out():
    def rival(seed, m):
        return None if seed in (0, 1) else jitter(seed)

    def hogwild(seed, m):
        return None if seed == 0 else jitter(seed)
    verdict = judged(6, regime_runs(hogwild, rival, count=7), cores=2)
    assert verdict.verdict == SUPPORTED
    assert "1 with one run censored" in verdict.reason
    assert "1 with both censored, left out" in verdict.reason
    # HOGWILD! censored against a rival that converged: only a lower bound, never "no slower"
    late = judged(6, regime_runs(lambda s, m: None, lambda s, m: 9.0 + 0.1 * s), cores=2)
    assert late.verdict == INCONCLUSIVE


@pytest.mark.parametrize("runs, cores, fragment", [
    (lambda: regime_runs(lambda s, m: None, lambda s, m: None), 2, "timed out"),
    (lambda: regime_runs(lambda s, m: 1.0, lambda s, m: 1.0), 1, "on >= 2 cores"),
    (lambda: regime_runs(lambda s, m: 1.0, lambda s, m: 1.0, rivals=(LEASHED,)), 2,
     f"no {SPARSE_LOCK} runs at 2 threads"),
    (lambda: regime_runs(lambda s, m: 1.0, lambda s, m: 1.0, count=4), 2, "needs >= 5 seed"),
])
def test_claim_6_not_testable_says_what_it_needs(runs, cores, fragment):
    verdict = judged(6, runs(), cores=cores)
    assert verdict.verdict == NOT_TESTABLE
    assert fragment in verdict.reason


def test_claim_6_on_a_workload_that_is_not_here_is_not_testable_and_names_it():
    missing = claims.Context(2, {}, missing={WORKLOAD: "not registered in this asgdbench"})
    verdict = claims.get_claim(6).judge([], WORKLOAD, missing)
    assert verdict.verdict == NOT_TESTABLE
    assert f"workload {WORKLOAD!r} cannot run here: not registered" in verdict.reason


def test_claim_6_reads_hogwild_and_lock_plain_not_the_authors_copy_per_step_variants():
    # the per-step-copy baselines of claims 1-5 copy all d coordinates: not the sparse regime
    runs = regime_runs(lambda s, m: jitter(s), lambda s, m: jitter(s))
    copies = [record(label, 2, s, time=100.0) for label in (LOCK, HOGWILD) for s in range(5)]
    assert judged(6, runs + copies, cores=2).verdict == SUPPORTED
    assert judged(6, copies, cores=2).verdict == NOT_TESTABLE


def test_claim_6_reports_the_bytes_each_update_wrote():
    runs = regime_runs(lambda s, m: jitter(s), lambda s, m: jitter(s))
    for run in runs:  # the sparse path's telemetry: the support's bytes, or all d for Leashed
        run.param_bytes_written_per_update = 4e5 if run.config.strategy == LEASHED else 300.0
    rows = {row[1]: row[4] for row in judged(6, runs, cores=2).rows}
    assert rows == {SPARSE_HOGWILD.label: "300", SPARSE_LOCK.label: "300",
                    LEASHED.label: "4e+05"}


def test_claim_6_at_exactly_the_margin_is_supported_at_most_5_percent_of_the_time():
    # a true ratio of 1.2 is the margin: "no slower" must be shown no more often than its
    # one-sided 5 % (each part), so the claim (both parts at once) at most that
    rng = np.random.default_rng(13)
    supported = []
    for _ in range(200):
        times = {(label, s): float(np.exp(0.15 * rng.standard_normal()))
                 * (1.2 if label == SPARSE_HOGWILD else 1.0)
                 for label in (SPARSE_HOGWILD, SPARSE_LOCK, LEASHED) for s in range(10)}
        runs = [record(label, 2, s, time=t, max_time=100.0) for (label, s), t in times.items()]
        supported.append(judged(6, runs, cores=2).verdict == SUPPORTED)
    assert np.mean(supported) <= 0.06  # Monte Carlo error about 1.5 %


# -- combining ---------------------------------------------------------------------------------

def test_parts_combine_into_four_verdicts():
    def of(*verdicts):
        return combine([Part(str(i), v, "") for i, v in enumerate(verdicts)])
    assert of(SUPPORTED, SUPPORTED) == SUPPORTED
    assert of(SUPPORTED, CONTRADICTED, INCONCLUSIVE) == CONTRADICTED
    assert of(SUPPORTED, INCONCLUSIVE, NOT_TESTABLE) == INCONCLUSIVE
    assert of(SUPPORTED, NOT_TESTABLE) == NOT_TESTABLE


def test_an_overall_line_counts_workloads():
    def verdict(word):
        return Verdict(1, "w", word, "", ())
    assert overall([verdict(SUPPORTED), verdict(SUPPORTED), verdict(INCONCLUSIVE)]) == \
        "supported on 2 of 3 workloads, inconclusive on 1"
    assert overall([verdict(CONTRADICTED)]) == "contradicted on the one workload"
    assert overall([verdict(INCONCLUSIVE)] * 2) == "inconclusive on both workloads"


# -- statistics --------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[0.3, -0.1, 0.5, 0.2, 0.05, -0.4, 0.7],
                                    [1.0, 2.0, 3.5, -0.5, 0.25, 4.0, 0.1, -2.2, 0.6]])
def test_the_signed_rank_null_matches_scipys_exact_wilcoxon(values):
    values = np.asarray(values)
    ranks = stats.rankdata(np.abs(values))
    positive = ranks[values > 0].sum()
    tail = cs.signed_rank_null(values.size)[:int(positive) + 1].sum()  # P(T <= observed)
    expected = stats.wilcoxon(values, alternative="less", method="exact").pvalue
    assert tail == pytest.approx(expected)


def test_the_hodges_lehmann_interval_inverts_the_signed_rank_test():
    values = np.array([0.31, 0.12, 0.55, 0.24, 0.05, 0.42, -0.08, 0.19, 0.36, 0.27])
    interval = cs.hodges_lehmann(values)
    assert interval.low < interval.point < interval.high
    # shifting by a value inside the interval leaves the test unrejected at 5 % one-sided,
    # shifting just beyond an end rejects it: the interval is the test's acceptance set
    for shift, rejects in ((interval.low + 1e-9, False), (interval.low - 1e-6, True),
                           (interval.high + 1e-6, True)):
        side = "greater" if shift < interval.point else "less"
        p = stats.wilcoxon(values - shift, alternative=side, method="exact").pvalue
        assert (p <= 0.05) == rejects, (shift, p)


def test_five_pairs_give_the_extreme_interval_at_its_true_confidence_and_four_none():
    interval = cs.hodges_lehmann([0.1, 0.2, 0.3, 0.4, 0.5])
    assert (interval.low, interval.high) == (0.1, 0.5)
    assert interval.confidence == pytest.approx(1 - 2 / 32)
    assert cs.hodges_lehmann([0.1, 0.2, 0.3, 0.4]) is None


def test_the_planned_seeds_reach_the_promised_power():
    spread, effect = 0.24, math.log(1.2)
    needed = cs.seeds_needed(spread, effect)
    assert 8 <= needed <= 20
    rng = np.random.default_rng(7)
    detected = [cs.hodges_lehmann(rng.normal(effect, spread, needed)).low > 0
                for _ in range(400)]
    assert np.mean(detected) >= 0.75  # 80 % promised, Monte Carlo error about 2 %
    fewer = [cs.hodges_lehmann(rng.normal(effect, spread, 5)).low > 0 for _ in range(400)]
    assert np.mean(fewer) < 0.6


def test_the_median_interval_uses_order_statistics():
    interval = cs.median_interval([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (interval.point, interval.low, interval.high) == (3.0, 1.0, 5.0)
    assert interval.confidence == pytest.approx(1 - 2 / 32)


def test_a_run_recorded_without_p50_takes_its_median_from_the_histogram():
    from asgdbench.study.claim_runs import staleness_figure, time_to_epsilon

    run = record(LEASHED, 2, 0, zero_share=0.3)  # 30 % at 0, 70 % at 3
    del run.staleness["p50"]
    assert staleness_figure(run, "p50") == 3.0
    assert staleness_figure(run, "zero") == pytest.approx(0.3)
    instant = record(LEASHED, 2, 0)
    instant.time_to_target_s = 0.0
    assert time_to_epsilon(instant) > 0  # a log ratio needs it


# -- censoring: a bound limits one end of the interval only -----------------------------------

def test_claim_1_baselines_timing_out_just_after_leashed_do_not_contradict_the_magnitude():
    # the baseline never reached ε within 10 s; Leashed did in about 9 s: the ratio is at
    # least 1.05-1.1, perhaps 4x. The direction is shown; the 20 % can be neither shown nor
    # excluded, so the magnitude part must not read contradicted
    runs = speed_runs(lambda s, m: 9.0 + 0.1 * s, lambda s, m: None)
    found = parts(judged(1, runs, cores=2))
    assert found[f"faster than {LOCK} at 2 threads"] == SUPPORTED
    magnitude = next(name for name in found if name.startswith(f"faster than {LOCK}")
                     and "20 %" in name)
    assert found[magnitude] == INCONCLUSIVE


def test_an_interval_with_censored_pairs_contains_that_of_every_completion():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(5, 14))
        values = rng.normal(0.2, 0.3, n)
        bounds = rng.choice([-1, 0, 0, 1], n)  # -1: at most the value, 1: at least it
        censored = cs.hodges_lehmann(values, bounds=bounds)
        completed = values + bounds * rng.exponential(1.0, n)  # any values beyond the bounds
        exact = cs.hodges_lehmann(completed)
        assert censored.low <= exact.low and exact.high <= censored.high
        assert censored.point == cs.hodges_lehmann(values).point


def test_claim_1_a_baseline_timing_out_at_more_threads_does_not_refute_the_growth():
    def baseline(seed, m):  # 2x at 2 threads; at 4 threads it never reached ε in 10 s
        return 2 * jitter(seed) if m == 2 else None

    runs = speed_runs(lambda s, m: jitter(s) if m == 2 else 9.0 + 0.1 * s, baseline,
                      threads=(2, 4))
    assert parts(judged(1, runs, cores=4))["advantage holds as threads grow"] == INCONCLUSIVE


def test_five_pairs_detect_the_stated_smallest_effect_with_the_stated_power():
    # with 5 pairs the interval is [min, max]: the low end clears 0 only if all 5 differences
    # do, so under normal errors the power at shift d is Phi(d / sd)^5 (a closed form)
    spread = 0.3
    mde = cs.minimum_detectable_effect(spread, 5)
    assert stats.norm.cdf(mde / spread) ** 5 == pytest.approx(cs.POWER, abs=0.02)


@pytest.mark.parametrize("pairs", [5, 8, 13])
def test_the_smallest_detectable_effect_is_detected_at_the_stated_power(pairs):
    spread = 0.25
    mde = cs.minimum_detectable_effect(spread, pairs)
    rng = np.random.default_rng(11)  # not the seed the statistics use
    detected = np.mean([cs.hodges_lehmann(rng.normal(mde, spread, pairs)).low > 0
                        for _ in range(3000)])
    assert detected == pytest.approx(cs.POWER, abs=0.03)  # Monte Carlo error about 0.7 %


def test_an_inconclusive_magnitude_states_the_ratio_that_would_clear_1_2_not_1():
    noise = [0.6, 1.7, 0.9, 1.4, 0.7]
    runs = speed_runs(lambda s, m: noise[s], lambda s, m: 1.5 * noise[(s + 2) % 5])
    verdict = judged(1, runs, cores=2)
    by_name = {part.name: part for part in verdict.parts}
    differences = [math.log(1.5 * noise[(s + 2) % 5] / noise[s]) for s in range(5)]
    shift = cs.minimum_detectable_effect(float(np.std(differences, ddof=1)), 5)
    direction = by_name[f"faster than {LOCK} at 2 threads"]
    magnitude = next(p for name, p in by_name.items()
                     if name.startswith(f"faster than {LOCK}") and "20 %" in name)
    assert direction.verdict == magnitude.verdict == INCONCLUSIVE
    assert f"is {math.exp(shift):.2f}x" in direction.reason
    assert f"is {1.2 * math.exp(shift):.2f}x" in magnitude.reason  # shown above 1.2, not 1


def test_claim_5_a_run_without_the_figure_is_left_out_not_read_as_infinite():
    runs = staleness_runs({}, {}, count=6)
    leashed_5 = next(r for r in runs if r.config.strategy == LEASHED and r.config.seed == 5)
    leashed_5.staleness = None  # recorded without a staleness summary: every figure is NaN
    verdict = judged(5, runs, cores=2)
    assert parts(verdict)[f"mean no larger than {LOCK}'s at 2 threads"] == SUPPORTED
    assert "nan" not in verdict.reason
    assert "1 runs without a partner seed" in verdict.reason


def test_a_nan_difference_never_decides_an_interval():
    interval = cs.effect_of([0.1, 0.2, math.nan, 0.3, 0.4, 0.5]).interval
    assert interval is not None and not any(map(math.isnan, (interval.low, interval.high)))


def test_the_same_runs_in_another_order_give_the_same_report():
    # a cluster appends runs as they finish: the order in runs.jsonl is not the runs
    def times(label, lr, seed):
        return (1.0 + 0.3 * math.sin(seed + 7 * lr)) * (1.3 if label != LEASHED else 1.0)
    runs = stability_runs(lambda label, lr, s: not (label == LOCK and s == 4), times, count=6)
    shuffled = list(runs)
    np.random.default_rng(1).shuffle(shuffled)
    assert judged(2, shuffled, cores=2).reason == judged(2, runs, cores=2).reason


def test_too_few_values_for_a_median_interval_give_the_whole_line_which_always_covers():
    interval = cs.median_interval([1.0, 2.0, 3.0, 4.0])  # the widest, [min, max], is 87.5 %
    assert (interval.low, interval.high) == (-math.inf, math.inf)
    assert interval.confidence == 1.0


# -- error rates of the verdicts, by Monte Carlo (seeded; synthetic records) -----------------

def claim_1_at_the_claimed_ratio(rng, threads=(2, 4, 8), count=10, sigma=0.15):
    """Every baseline exactly 1.2x slower than Leashed in expectation, log-normal noise."""
    times = {(label, m, s): float(np.exp(sigma * rng.standard_normal()))
             * (1.0 if label == LEASHED else 1.2)
             for m in threads for label in (LEASHED, LOCK, HOGWILD) for s in range(count)}
    return [record(label, m, s, time=time, max_time=100.0)
            for (label, m, s), time in times.items()]


def test_claim_1_at_exactly_the_claimed_ratio_is_contradicted_at_most_5_percent_of_the_time():
    # 7 intervals (3 counts x 2 baselines, and the growth): unadjusted, each may exclude
    # 1.2 by chance 5 % of the time and the claim read contradicted about 20 % of the time
    rng = np.random.default_rng(11)
    verdicts = [judged(1, claim_1_at_the_claimed_ratio(rng), cores=8) for _ in range(300)]
    assert all(len(v.parts) == 13 for v in verdicts)
    contradicted = np.mean([v.verdict == CONTRADICTED for v in verdicts])
    assert contradicted <= 0.07  # family-wise 5 %; Monte Carlo error about 1 %
    # the parts still show their own intervals, and say when the adjustment decided
    assert any("Bonferroni" in p.reason for v in verdicts for p in v.parts)


def test_a_contradicted_part_needs_its_interval_at_the_adjusted_level():
    # 2 % faster at 2 threads, 10 seeds: the magnitude's 90 % interval excludes 1.2, and so
    # does its 95 % one (2 intervals, lock and HOGWILD: each end one-sided at 2.5 %)
    runs = speed_runs(lambda s, m: jitter(s), lambda s, m: 1.02 * jitter(s) * (1 + 0.002 * s),
                      count=10)
    verdict = judged(1, runs, cores=2)
    assert verdict.verdict == CONTRADICTED
    assert "95.0% level too" in verdict.reason
    # 5 seeds cannot exclude anything one-sided at 2.5 % (the least is 1/32): not contradicted
    five = speed_runs(lambda s, m: jitter(s), lambda s, m: 1.02 * jitter(s) * (1 + 0.002 * s))
    assert judged(1, five, cores=2).verdict == INCONCLUSIVE


def contention_at_exponent(rng, exponent=1.0, count=5, sigma=0.3):
    """Failures per update at 2 and 4 threads, per seed, growing as m^exponent in expectation."""
    runs = []
    for s in range(count):
        base = 0.01 * float(np.exp(sigma * rng.standard_normal()))
        for m in (2, 4):
            rate = base * (m / 2) ** exponent * float(np.exp(sigma * rng.standard_normal()))
            runs.append(record(LEASHED, m, s, failures=round(rate * 10_000)))
    return runs


@pytest.mark.parametrize("count", [5, 10])
def test_claim_4_at_a_linear_exponent_is_supported_at_most_5_percent_of_the_time(count):
    # the percentile bootstrap of pooled rates read supported 11 % (5 seeds), 7 % (10)
    rng = np.random.default_rng(5)
    found = [parts(judged(4, contention_at_exponent(rng, count=count), cores=4))
             ["failures per update grow sub-linearly"] for _ in range(500)]
    assert np.mean([v == SUPPORTED for v in found]) <= 0.05  # Monte Carlo error under 1 %
    assert np.mean([v == NOT_TESTABLE for v in found]) == 0


def test_claim_4_exponent_is_paired_by_seed():
    # seeds differ 10x in contention, each grows 1.3x for 2x threads: a paired exponent of
    # 0.38 for every seed is sub-linear; pooled or unpaired rates would drown it in the spread
    runs = [record(LEASHED, m, s, failures=round(100 * 3 ** s * (1.3 if m == 4 else 1)
                                                 * (1 + 0.01 * s)))
            for s in range(5) for m in (2, 4)]
    part = judged(4, runs, cores=4).parts[0]
    assert part.verdict == SUPPORTED
    assert "per seed" in part.reason


def test_claim_4_a_seed_without_failures_at_the_smaller_count_bounds_its_exponent_from_below():
    # one seed grows from 0 failures: its exponent is unbounded above, so it may not help
    # show sub-linear growth (it widens the interval's high end to infinity)
    runs = [record(LEASHED, m, s, failures=(0 if s == 0 and m == 2 else
                                            round(100 * (1.2 if m == 4 else 1) * (1 + 0.01 * s))))
            for s in range(5) for m in (2, 4)]
    part = judged(4, runs, cores=4).parts[0]
    assert part.verdict == INCONCLUSIVE
    assert ", inf] (93.8% interval)" in part.reason  # the high end is unbounded
    assert "1 seeds without failures at 2 threads" in part.reason


def test_claim_2_one_measure_needs_its_interval_at_half_the_error_to_decide():
    # success: Leashed alone converged in 5 (step size, seed) pairs: 5 of 5, whose exact 90 %
    # interval clears 0.5 (0.55) but whose 95 % one does not (0.48); spreads alike
    def success(label, lr, seed):
        return label == LEASHED or lr == LR or seed > 0
    verdict = judged(2, stability_runs(success, lambda label, lr, s: 1.0 + 0.1 * s,
                                       lrs=(LR, 2 * LR, 4 * LR, 8 * LR, 16 * LR, 32 * LR)),
                     cores=2)
    assert "95%" in verdict.reason
    assert verdict.verdict == INCONCLUSIVE
