"""Step-size rules: their formulas, TAIL's warm-up CDF, and every strategy applying them.

The evidence is independent of the code under test: NumPy writes each formula
out again; TAIL's CDF is recomputed from the τ sample the test fed it; and the
probe's exact float64 arithmetic turns the applied staleness histogram into
the final vector a consistent strategy must end at.
"""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from conftest import probe_run, run_watched
from numba import njit

from asgdbench.algorithms.step_rules import tail
from asgdbench.engine.consistency import consistency_stress
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.errors import ConfigError, PluginError
from asgdbench.plugins.files import load_plugin_file
from asgdbench.plugins.step_rules import (
    STEP_RULES,
    StepRule,
    available_step_rules,
    check_rule_state,
    parse_step_spec,
    register_step_rule,
)
from asgdbench.primitives.steps import rule_step
from asgdbench.study.cli import main
from asgdbench.workloads import probe

PLUGINS = Path(__file__).parent / "plugins"
TAUS = np.array([0, 1, 2, 3, 7, 15, 100, 5000])
LR = 0.0078125
STRATEGIES = ("seq", "lock", "hogwild", "leashed:tp=inf", "leashed:tp=1", "sync")


def step_of(spec: str, tau: int, threads: int = 4, tid: int = 0, state: tuple | None = None,
            lr: float = LR) -> float:
    bound = parse_step_spec(spec)
    return bound.rule.step(lr, tau, tid, bound.make_state(threads) if state is None else state)


@pytest.fixture(scope="module")
def halving():
    """The test rule lr * 2^-min(τ, 4), from a --plugin file (every step a power of two)."""
    load_plugin_file(PLUGINS / "halving.py")
    yield parse_step_spec("halving")


def halving_step(tau: int) -> float:
    return LR * 2.0 ** -min(tau, 4)


# -- the formulas ----------------------------------------------------------------------

def test_the_built_ins_are_registered_with_constant_the_default():
    assert {"constant", "inverse", "fleet", "tail"} <= set(available_step_rules())
    assert parse_step_spec(None).label == "constant"
    assert parse_step_spec("tail:amplitude=0.5").label == \
        "tail:amplitude=0.5:warmup_from=10:warmup_to=15:max_staleness=199"


def test_constant_and_inverse_match_their_formulas():
    assert [step_of("constant", int(t)) for t in TAUS] == [LR] * TAUS.size
    np.testing.assert_array_equal([step_of("inverse", int(t)) for t in TAUS], LR / (TAUS + 1.0))


@pytest.mark.parametrize("threads, spec, tau_th", [(4, "fleet", 5), (16, "fleet", 17),
                                                   (4, "fleet:tau_th=2.5", 2.5)])
def test_fleet_matches_its_formula(threads, spec, tau_th):
    beta = (2 / tau_th) * np.log1p(tau_th / 2)
    got = [step_of(spec, int(t), threads=threads) for t in TAUS]
    np.testing.assert_allclose(got, LR * np.exp(-beta * TAUS), rtol=1e-14)
    # at the threshold the factor is (1 + τ_th / 2)^-2, FLEET's design point
    if float(tau_th).is_integer():
        assert step_of(spec, int(tau_th), threads=threads) == pytest.approx(
            LR / (1 + tau_th / 2) ** 2, rel=1e-14)


def test_rule_step_gives_the_step_in_the_type_of_lr():
    inverse = parse_step_spec("inverse")
    step = rule_step(inverse.rule.step, (), np.float32(1.0), 2, 0)
    assert step == float(np.float32(1 / 3)) and step != 1 / 3  # rounded to float32
    assert rule_step(inverse.rule.step, (), 1.0, 2, 0) == 1 / 3


# -- TAIL ------------------------------------------------------------------------------

def feed_tail(state: tuple, taus_by_thread: list[list[int]], lr: float = LR) -> list[list[float]]:
    """Call the tail kernel as each thread would, in turn; the steps it gave."""
    rule = parse_step_spec("tail").rule
    steps: list[list[float]] = [[] for _ in taus_by_thread]
    for call in range(max(map(len, taus_by_thread))):
        for tid, taus in enumerate(taus_by_thread):
            if call < len(taus):
                steps[tid].append(rule.step(lr, taus[call], tid, state))
    return steps


def test_tail_builds_the_empirical_cdf_of_the_warm_up_and_applies_its_formula():
    amplitude, max_staleness = 0.75, 5
    spec = parse_step_spec(f"tail:amplitude={amplitude}:warmup_from=2:warmup_to=4:"
                           f"max_staleness={max_staleness}")
    state = spec.make_state(3)
    # with 3 threads in turn, calls 4-12 of all (each thread's 2nd to 4th) are the sample;
    # 7 and 100 are beyond the histogram
    taus = [[50, 0, 1, 1, 9], [50, 2, 7, 0, 9], [50, 100, 3, 1]]
    steps = feed_tail(state, taus)
    sample = np.minimum([t for row in taus for t in row[1:4]], max_staleness)

    cdf = state.cdf
    expected_cdf = [np.mean(sample < t) for t in range(max_staleness + 1)]
    np.testing.assert_allclose(cdf, expected_cdf, rtol=0, atol=1e-15)
    # until the window's last call (the 12th, thread 2's 4th), every step was lr
    assert steps[0][:4] == steps[1][:4] == steps[2][:4] == [LR] * 4
    # after it: α (1 + A (1 − 2 F(min(τ, max_staleness))))
    expected_after = LR * (1 + amplitude * (1 - 2 * np.mean(sample < max_staleness)))
    assert steps[0][4] == steps[1][4] == pytest.approx(expected_after, rel=1e-14)
    for tau in (0, 1, 2, 3, 6, 10_000):
        f = np.mean(sample < min(tau, max_staleness))
        assert spec.rule.step(LR, tau, 0, state) == pytest.approx(
            LR * (1 + amplitude * (1 - 2 * f)), rel=1e-14)


def test_tail_clamps_with_a_comparison_not_the_authors_shift():
    """τ = 7 with max_staleness 5 counts as 5 (the authors' 7 >> 5 would make it 0)."""
    state = parse_step_spec("tail:warmup_from=1:warmup_to=1:max_staleness=5").make_state(2)
    feed_tail(state, [[7], [1]])
    histogram, cdf = state.histogram, state.cdf
    assert histogram.tolist() == [0, 1, 0, 0, 0, 1]
    assert cdf[1] == 0.0  # nothing below 1: the 7 is not in bin 0
    assert cdf[5] == 0.5


def test_tail_counts_its_window_over_all_threads_so_an_idle_thread_holds_nothing_up():
    """With 2 threads the window 1..2 is calls 1-4 of both together, as the authors' framework
    counts global steps: thread 1 never calls, thread 0's calls fill it, factor 1 until then."""
    state = parse_step_spec("tail:warmup_from=1:warmup_to=2").make_state(2)
    steps = feed_tail(state, [[0, 0, 0], []])  # thread 1 never calls
    assert steps[0] == [LR] * 3
    assert spec_inspect(state) == {"warmup_complete": False, "samples": 3, "samples_needed": 4}
    steps = feed_tail(state, [[0, 0, 1], []])
    # the 4th call completed the sample (all τ = 0): F(0) = 0, F(1) = 1
    assert steps[0] == [LR, 2 * LR, 0.0]
    assert spec_inspect(state)["warmup_complete"] is True
    assert state.histogram[0] == 4  # calls after the window add nothing


def test_tail_does_not_build_f_while_a_claimed_sample_is_still_being_added():
    """Replay: with 2 threads the window is calls 1-4; calls 1 and 2 are in, call 3 was claimed
    by a thread that stalled before adding its τ. Call 4 (the window's last number) must not
    build F from three samples: the builder is the call that completes the count."""
    state = parse_step_spec("tail:warmup_from=1:warmup_to=2").make_state(2)
    histogram, shared = state.histogram, state.shared
    shared[0], shared[8], histogram[0] = 3, 2, 2  # CALLS, SAMPLED: call 3 claimed, not added
    assert parse_step_spec("tail").rule.step(LR, 5, 1, state) == LR
    assert shared[16] == 0 and shared[8] == 3  # READY not set; three samples in
    assert spec_inspect(state)["warmup_complete"] is False


def test_tail_refuses_a_window_its_call_counter_could_not_hold():
    with pytest.raises(ConfigError, match="beyond"):
        parse_step_spec(f"tail:warmup_to={2 ** 60}").make_state(16)


def test_tail_samples_each_call_of_the_window_once_under_contention():
    """8 threads race through the window: exactly its calls are sampled, F is built once from
    all of them, and no call after it adds to the histogram."""
    import threading

    threads, window = 8, (3, 40)
    spec = parse_step_spec(f"tail:warmup_from={window[0]}:warmup_to={window[1]}")
    state, rule = spec.make_state(threads), spec.rule
    taus = np.random.default_rng(0).integers(0, 30, (threads, 200))
    rule.step(LR, 0, 0, spec.make_state(1))  # compile outside the race

    def calls(tid: int) -> None:
        for tau in taus[tid]:
            rule.step(LR, int(tau), tid, state)

    workers = [threading.Thread(target=calls, args=(tid,)) for tid in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    needed = (window[1] - window[0] + 1) * threads
    assert spec_inspect(state) == {"warmup_complete": True, "samples": needed,
                                   "samples_needed": needed}
    histogram, cdf = state.histogram, state.cdf
    assert histogram.sum() == needed
    np.testing.assert_allclose(cdf, np.concatenate([[0], np.cumsum(histogram)[:-1]]) / needed)


def spec_inspect(state: tuple) -> dict:
    return parse_step_spec("tail").rule.inspect(state)


def test_tail_clamps_a_negative_staleness_to_zero_instead_of_writing_before_its_histogram():
    state = parse_step_spec("tail:warmup_from=1:warmup_to=1:max_staleness=5").make_state(1)
    guard = state.histogram.copy()
    feed_tail(state, [[-3]])
    assert state.histogram.tolist() == [1, 0, 0, 0, 0, 0] and guard.sum() == 0
    assert parse_step_spec("tail").rule.step(LR, -7, 0, state) == pytest.approx(
        LR * (1 + 1.0 * (1 - 2 * 0.0)))  # F(0) = 0, not the wrapped-around last bin


def test_tail_refuses_an_amplitude_that_would_step_uphill():
    with pytest.raises(ConfigError, match="amplitude"):
        parse_step_spec("tail:amplitude=1.5").make_state(1)


def test_tail_publishes_ready_only_after_the_cdf_is_built():
    """In the compiled kernel the release store of READY follows the call that builds F."""
    import re

    rule = njit(nogil=True)(tail.gated_step.py_func)  # a fresh compile: numba hides cached IR
    state = parse_step_spec("tail").make_state(1)
    rule(LR, 0, 0, state, None)
    [ir] = list(rule.inspect_llvm().values())
    build = [m.start() for m in re.finditer(r"call [^\n]*build_cdf", ir)]
    ready = [m.start() for m in re.finditer(r"store atomic [^\n]* release", ir)]
    assert build and ready, "the IR was not read"
    assert min(ready) > min(build)
    assert re.search(r"load atomic [^\n]* acquire", ir)
    assert "_park" not in ir  # the gates compile to nothing without a board


def test_tail_claims_adds_and_counts_each_sample_with_an_atomic_add():
    """The call counter, the histogram bin and the sample count are each one ``atomicrmw``:
    a plain ``+= 1`` on any of them loses samples under contention, and compiles to the same
    x86 code as an atomic add would on an uncontended line only in the IR's eyes."""
    from conftest import atomic_orderings

    rule = njit(nogil=True)(tail.gated_step.py_func)
    rule(LR, 0, 0, parse_step_spec("tail").make_state(1), None)
    assert atomic_orderings(rule, "gated_step")["atomicrmw", "seq_cst"] >= 3


def test_tail_builds_f_only_once_every_claimed_sample_is_in():
    """Replay with gates: the window is calls 1-2 of 2 threads. A claims call 1 and is
    preempted between adding its τ and counting it; B's call 2 must not build F, whose count
    would then include a sample not in the histogram (or, counted first, not added yet).
    A's count completes the sample: F is built from both."""
    from asgdbench.algorithms.step_rules.tail import SAMPLE_ADDED, gated_step
    from asgdbench.primitives.gates import Actor, GateBoard

    state = parse_step_spec("tail:warmup_from=1:warmup_to=1:max_staleness=5").make_state(2)
    board = GateBoard(2)
    A, B = range(2)
    try:
        board.arm(A, SAMPLE_ADDED)
        first = Actor(lambda: gated_step(LR, 4, A, state, board.array), "A")
        board.wait_parked(A, SAMPLE_ADDED)  # call 1: half done
        assert gated_step(LR, 1, B, state, board.array) == LR  # call 2: all in, F not built
        assert spec_inspect(state)["warmup_complete"] is False
        board.disarm(A)
        board.release(A)
        assert first.result() == LR
    finally:
        board.abort()
    assert spec_inspect(state) == {"warmup_complete": True, "samples": 2, "samples_needed": 2}
    assert state.histogram.tolist() == [0, 1, 0, 0, 1, 0]
    np.testing.assert_array_equal(state.cdf, [0, 0, 0.5, 0.5, 0.5, 1])  # F of {1, 4}


def test_tail_does_not_build_f_while_a_claimed_call_has_not_added_its_sample():
    """The schedule above with real threads: A claims call 1 of a 2-call window and is
    preempted before adding its τ; B's call 2, the window's last number, must not build F."""
    from asgdbench.algorithms.step_rules.tail import CALL_CLAIMED, gated_step
    from asgdbench.primitives.gates import Actor, GateBoard

    state = parse_step_spec("tail:warmup_from=1:warmup_to=1:max_staleness=5").make_state(2)
    board = GateBoard(2)
    A, B = range(2)
    try:
        board.arm(A, CALL_CLAIMED)
        first = Actor(lambda: gated_step(LR, 4, A, state, board.array), "A")
        board.wait_parked(A, CALL_CLAIMED)
        assert gated_step(LR, 1, B, state, board.array) == LR
        assert spec_inspect(state) == {"warmup_complete": False, "samples": 1,
                                       "samples_needed": 2}
        board.disarm(A)
        board.release(A)
        assert first.result() == LR
    finally:
        board.abort()
    assert spec_inspect(state)["warmup_complete"] is True
    assert state.histogram.tolist() == [0, 1, 0, 0, 1, 0]


@njit(nogil=True)
def _tail_calls(rule_state, tau, calls, tid):
    """``calls`` calls of the tail kernel in a row, without the GIL: real contention."""
    for _ in range(calls):
        tail.step(LR, tau, tid, rule_state)


def test_tail_loses_no_sample_when_every_thread_hits_one_bin_at_once():
    """8 threads fill a 160,000-call window, all with one τ, in nopython loops: every sample
    must reach the histogram (a non-atomic add loses some), and F is built from all."""
    import threading

    threads, per_thread = 8, 20_000
    spec = parse_step_spec(f"tail:warmup_from=1:warmup_to={per_thread}")
    state = spec.make_state(threads)
    _tail_calls(spec.make_state(1), 3, 1, 0)  # compile outside the race
    workers = [threading.Thread(target=_tail_calls, args=(state, 3, 2 * per_thread, tid))
               for tid in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    needed = threads * per_thread
    assert spec_inspect(state) == {"warmup_complete": True, "samples": needed,
                                   "samples_needed": needed}
    assert state.histogram.tolist() == [0, 0, 0, needed] + [0] * (state.histogram.size - 4)
    assert state.cdf[3] == 0.0 and state.cdf[4] == 1.0


def test_step_factors_out_of_range_go_to_the_edge_bins():
    from asgdbench.engine.worker import FACTOR_BIN_WIDTH, FACTOR_BINS, factor_bin

    assert factor_bin(1.0) == round(1 / FACTOR_BIN_WIDTH)
    assert factor_bin(-0.5) == 0
    last = FACTOR_BINS - 1
    assert factor_bin(1e30) == factor_bin(math.inf) == factor_bin(math.nan) == last


class _Named(NamedTuple):
    rate: float
    cells: Any


def test_a_rule_state_that_is_not_a_tuple_of_arrays_is_refused():
    assert check_rule_state((np.zeros(2),), "ok")
    for bad in ([np.zeros(2)], (np.zeros(2), 3.0), _Named(0.5, [1, 2]), _Named("fast", 1)):
        with pytest.raises(PluginError, match="tuple of NumPy arrays"):
            check_rule_state(bad, "listy")


def test_a_named_rule_state_takes_scalar_parameters_as_scalars():
    """FLEET's β is a float field, not np.array([β]); halving's limit an int."""
    from asgdbench.algorithms.step_rules import fleet

    assert check_rule_state(_Named(0.5, np.zeros(2)), "ok")
    state = parse_step_spec("fleet:tau_th=4").make_state(2)
    assert type(state.beta) is float and state.beta == fleet.beta(4.0)
    assert check_rule_state(state, "fleet") is state
    assert check_rule_state(parse_step_spec("tail").make_state(2), "tail")
    assert step_of("fleet:tau_th=4", 3) == LR * math.exp(-fleet.beta(4.0) * 3)


def test_sync_threads_agree_on_every_tail_step():
    """SYNC applies thread 0's step to every slice: with TAIL the round where F arrives is one."""
    result = probe_run("sync", 4, 3000, step="tail:warmup_from=1:warmup_to=2")
    assert result.evaluation["components_disagree"] is False
    assert result.step_rule["state"]["warmup_complete"] is True


def test_tail_refuses_a_window_that_ends_before_it_starts():
    with pytest.raises(ConfigError, match="warmup_to"):
        parse_step_spec("tail:warmup_from=9:warmup_to=3").make_state(1)


# -- every strategy applies the rule at the apply's τ -------------------------------------

def predicted_steps(result: RunResult, step) -> Fraction:
    """The sum of the steps the recorded applied-τ histogram predicts, exactly."""
    histogram = result.staleness["histogram"]
    assert int(max(map(int, histogram))) < 4095, "τ beyond the histogram: cannot predict"
    return sum(Fraction(step(int(tau))) * count for tau, count in histogram.items())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_rule_from_a_plugin_file_runs_with_every_built_in_strategy(strategy, halving):
    threads = 1 if strategy == "seq" else 4
    updates = 1500
    result = probe_run(strategy, threads, updates, step="halving", target_loss=None)
    assert result.status == "budget" and result.updates_applied == updates
    assert result.config.step.label == "halving:limit=4"
    assert result.config.label == f"{strategy}+halving:limit=4"  # every parameter shows
    assert result.step_source["kind"] == "file"
    # the steps taken are the rule at the recorded τ's (every step is a power of two: exact)
    steps = predicted_steps(result, halving_step)
    assert Fraction(result.step_rule["step_sum"]) == steps
    if strategy != "hogwild":  # consistent: no update lost, so the vector is the sum of steps
        expected = probe.START_VALUE - float(steps * Fraction(probe.GRADIENT_VALUE))
        np.testing.assert_array_equal(result.final_params, expected)
    if strategy in ("seq", "sync"):  # τ is 0: the rule is its value at 0
        assert result.staleness["histogram"] == {"0": updates}


def test_the_cli_runs_a_strategy_with_a_plugin_rule(capsys):
    code = main(["--plugin", str(PLUGINS / "halving.py"), "run", "--workload", "probe",
                 "--strategy", "lock", "--threads", "2", "--step", "halving:limit=2",
                 "--max-updates", "300", "--target-loss", "none", "--max-time", "none",
                 "--dtype", "float64"])
    out = capsys.readouterr().out
    assert code == 0
    assert "lock+halving:limit=2" in out
    assert "x lr, factor" in out


INVERSE_LCM = math.lcm(*range(1, 25))
"""lr / (τ + 1) is exact for τ < 24 when lr is this times a power of two."""


def test_lock_with_inverse_ends_exactly_where_the_applied_staleness_predicts():
    """float64, gradient 0.5, start 0, lr = lcm(1..24) * 2^-32: every step lr / (τ + 1)
    with τ < 24 and every partial sum are exact, so the final vector is the exact sum."""
    lr = INVERSE_LCM * 2.0 ** -32
    updates = 1000
    result = run_watched("probe", "lock", 4, step="inverse", lr=lr, max_updates=updates,
                         target_loss=None, max_time=None, dtype="float64")
    assert result.status == "budget" and result.updates_applied == updates
    taus = [int(tau) for tau in result.staleness["histogram"]]
    exact = Fraction(lr) * Fraction(probe.GRADIENT_VALUE)
    predicted = sum(exact / (int(tau) + 1) * count
                    for tau, count in result.staleness["histogram"].items())
    final = Fraction(float(result.final_params[0]))
    if max(taus) < 24:
        assert final == -predicted
    else:  # a thread preempted for long under the lock: bound the rounding of each update
        assert abs(final + predicted) <= updates * Fraction(np.spacing(float(predicted)))
    assert result.evaluation["components_disagree"] is False


def test_the_step_telemetry_matches_the_staleness_histogram():
    result = probe_run("lock", 4, 2000, step="inverse", target_loss=None)
    histogram = {int(tau): count for tau, count in result.staleness["histogram"].items()}
    factors = {tau: 1 / (tau + 1) for tau in histogram}
    applied = result.updates_applied
    steps = result.step_rule
    assert steps["mean_factor"] == pytest.approx(
        sum(factors[tau] * count for tau, count in histogram.items()) / applied, rel=1e-12)
    assert steps["mean_step"] == pytest.approx(steps["mean_factor"] * LR, rel=1e-12)
    assert steps["factor_max"] == 1.0 and steps["factor_min"] == min(factors.values())
    # the factor histogram: bin width 1/32, last bin collects everything from 63/32 on
    width = steps["factor_bin_width"]
    expected: dict[str, int] = {}
    for tau, count in histogram.items():
        key = f"{min(int(factors[tau] / width), 63) * width:g}"
        expected[key] = expected.get(key, 0) + count
    assert steps["factors"] == expected
    assert steps["factors"]["1"] == histogram[0]  # τ = 0: the full step


# -- consistency with a rule --------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["lock", "leashed:tp=inf",
                                      pytest.param("leashed:tp=1", marks=pytest.mark.slow),
                                      pytest.param("sync", marks=pytest.mark.slow)])
def test_no_torn_read_and_no_lost_update_with_a_rule(strategy, halving):
    report = consistency_stress(strategy, 8, 2000, step="halving")
    assert report.torn_reads == report.wrong_versions == report.changed_while_held == 0
    assert report.applied == 2000
    assert report.final_is_exact, (report.final_params[0], report.expected_params()[0])


@pytest.mark.slow
def test_a_non_dyadic_rule_is_checked_within_rounding():
    report = consistency_stress("leashed:tp=inf", 8, 2000, step="tail:warmup_from=1:warmup_to=3")
    assert report.torn_reads == report.wrong_versions == report.changed_while_held == 0
    assert report.final_within_rounding


# -- registration and specs ----------------------------------------------------------------

def test_registration_refuses_a_malformed_rule_naming_its_source():
    def make_state(n_threads):
        return ()

    with pytest.raises(PluginError, match=r"step rule 'plain' from .*: step must be an @njit"):
        register_step_rule(StepRule("plain", "x", make_state, step=lambda lr, t, i, s: lr))
    from numba import njit

    three = njit(lambda lr, tau, tid: lr)
    with pytest.raises(PluginError, match="must take 4 arguments"):
        register_step_rule(StepRule("three", "x", make_state, step=three))
    assert "plain" not in available_step_rules() and "three" not in available_step_rules()


def test_a_plugin_rule_cannot_take_a_built_in_name(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text((PLUGINS / "halving.py").read_text().replace('name="halving"',
                                                                  'name="inverse"'))
    try:
        with pytest.raises(PluginError, match="'inverse' .* clashes with the one from built-in"):
            load_plugin_file(path)
    finally:
        sys.modules.pop("asgdbench_plugin_clash", None)
    assert STEP_RULES.source("inverse")["kind"] == "built-in"


def test_built_in_rules_stay_built_in_when_a_plugin_file_is_the_first_to_register(tmp_path):
    # In a fresh process the first register_step_rule (inside the plugin's import)
    # discovers the built-ins; they must not be attributed to the plugin file, or
    # a plugin naming its rule "constant" would silently replace the built-in.
    clash = tmp_path / "clash.py"
    clash.write_text((PLUGINS / "halving.py").read_text().replace('name="halving"',
                                                                   'name="constant"'))
    refused = subprocess.run([sys.executable, "-m", "asgdbench", "list", "--plugin", str(clash)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout[-300:]
    assert "'constant' from plugin file" in refused.stderr and "clashes with the one from " \
        "built-in asgdbench.algorithms.step_rules.constant" in refused.stderr, refused.stderr
    loaded = subprocess.run(
        [sys.executable, "-c",
         "from asgdbench.plugins.files import load_plugin_file\n"
         "from asgdbench.plugins.step_rules import STEP_RULES\n"
         f"load_plugin_file({str(PLUGINS / 'halving.py')!r})\n"
         "print(STEP_RULES.source('constant')['kind'], STEP_RULES.source('halving')['kind'])"],
        capture_output=True, text=True, timeout=120)
    assert loaded.stdout.split() == ["built-in", "file"], loaded.stderr


@pytest.mark.parametrize("argv, message", [
    (["--step", "nope"], "unknown step rule 'nope' (valid: constant, fleet,"),
    (["--step", "tail:amplitude=x"], "parameter amplitude='x' is not a finite number"),
    (["--step", "fleet:tau_th=nan"], "parameter tau_th='nan' is not a finite number"),
    (["--step", "tail:amplitude=inf"], "parameter amplitude='inf' is not a finite number"),
    (["--step", "tail:amplitude=1:amplitude=2"], "parameter 'amplitude' is given twice"),
    (["--step", "inverse:foo=1"], "step rule 'inverse' has no parameter 'foo'"),
    (["--step", "tail:warmup_from=9:warmup_to=3"], "warmup_to=3 is before warmup_from=9"),
    (["--step", "fleet:tau_th=-1"], "must be >= 0"),
])
def test_a_bad_rule_spec_is_one_line_and_exit_2(argv, message, capsys):
    code = main(["run", "--workload", "probe", "--strategy", "lock", "--threads", "1", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("asgdbench: error:")
    assert message in err


def test_compare_refuses_a_bad_rule_in_its_list_before_any_run(tmp_path, capsys):
    code = main(["compare", "--workload", "probe", "--strategies", "lock", "--threads", "1",
                 "--step", "inverse,bogus", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "unknown step rule 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs.jsonl").exists()


# -- results: identity, labels, old records ---------------------------------------------------

def test_the_rule_is_part_of_a_cells_identity_and_label():
    base = dict(workload="probe", strategy="leashed:tp=inf", threads=2, lr=0.1, batch_size=1,
                seed=0, target_loss=None, max_time=1.0, max_updates=None)
    constant, inverse = RunConfig(**base), RunConfig(**base, step="inverse")
    assert constant.key() != inverse.key()
    assert (constant.label, inverse.label) == ("leashed:tp=inf", "leashed:tp=inf+inverse")


def test_labels_show_every_rule_parameter_whichever_plugins_are_loaded():
    """A label is the plan's canonical spec (engine/choice.py): every parameter shows, so the
    label needs no plugin to know its defaults; the constant rule is left out; different
    specs never share a label or a key."""
    base = dict(workload="probe", strategy="leashed:tp=inf", threads=2, lr=0.1, batch_size=1,
                seed=0, target_loss=None, max_time=1.0, max_updates=None)
    specs = {parse_step_spec(text).label: shown for text, shown in [
        ("tail", "leashed:tp=inf+tail:amplitude=1:warmup_from=10:warmup_to=15:max_staleness=199"),
        ("tail:amplitude=0.5",
         "leashed:tp=inf+tail:amplitude=0.5:warmup_from=10:warmup_to=15:max_staleness=199"),
        ("tail:warmup_to=20:amplitude=1",
         "leashed:tp=inf+tail:amplitude=1:warmup_from=10:warmup_to=20:max_staleness=199"),
        ("fleet", "leashed:tp=inf+fleet:tau_th=0"),
        ("constant", "leashed:tp=inf")]}
    configs = {full: RunConfig(**base, step=full) for full in specs}
    assert {full: config.label for full, config in configs.items()} == specs
    assert len({config.key() for config in configs.values()}) == len(specs)
    assert "tail:amplitude=1:warmup_from=10:warmup_to=15:max_staleness=199" in configs  # identity
    # -0 is not 0 as the canonical spec writes it: two cells, two labels
    zero, minus_zero = (RunConfig(**base, step=parse_step_spec(f"fleet:tau_th={v}").label)
                        for v in ("0", "-0"))
    assert zero.label != minus_zero.label and zero.key() != minus_zero.key()
    # a rule this process does not know (a plugin file not loaded here) reads the same
    assert RunConfig(**base, step="elsewhere:x=1").label == "leashed:tp=inf+elsewhere:x=1"


def test_a_record_from_before_step_rules_reads_as_constant():
    result = probe_run("lock", 2, 100, target_loss=None)
    record = result.to_dict()
    assert record["step"] == "constant" and record["step_rule"]["rule"] == "constant"
    del record["step"], record["step_rule"], record["step_source"]
    old = RunResult.from_dict(record)
    assert old.config.step.label == "constant" and old.config.key() == result.config.key()


def test_compare_grid_has_a_step_axis_and_resumes_by_it(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["compare", "--workload", "probe", "--strategies", "lock,hogwild", "--threads", "2",
            "--step", "constant,inverse", "--repeats", "1", "--max-updates", "300",
            "--target-loss", "none", "--max-time", "none", "--dtype", "float64", "--out",
            str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    for label in ("lock", "lock+inverse", "hogwild", "hogwild+inverse"):
        assert any(line.split("|")[1].strip() == label for line in table.splitlines()
                   if line.startswith("|")), label
    assert "step/lr" in table
    assert main([*argv, "--resume"]) == 0
    assert "0 of 4 runs to do" in capsys.readouterr().err


def test_the_contributing_example_rule_registers_and_matches_its_formula(tmp_path):
    guide = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    section = guide.split("### Writing a plugin: a step rule", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 16
    (tmp_path / "forgiving.py").write_text(code)
    try:
        load_plugin_file(tmp_path / "forgiving.py")
        got = [step_of("forgiving:k=4", int(t)) for t in TAUS]
        np.testing.assert_array_equal(got, LR / np.maximum(1, TAUS - 4))
    finally:
        STEP_RULES.forget("forgiving")
        sys.modules.pop("asgdbench_plugin_forgiving", None)


@pytest.mark.parametrize("strategy", ["leashed", "lock", "hogwild"])
def test_the_constant_rule_compiles_to_nothing_in_update(strategy):
    """With ``constant`` the optimised update calls no rule code: the step is lr, inlined."""
    import re

    from asgdbench.plugins.strategies import get_strategy
    from asgdbench.primitives.protocol import CONTROL_CELLS, MAX_UPDATES

    kernels = get_strategy(strategy)
    constant = parse_step_spec("constant")
    state = kernels.make_state(np.zeros(16, np.float32), 1)
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = 1
    _, token = kernels.read(state, 0, control)
    kernels.update(state, 0, token, np.zeros(16, np.float32), np.float32(0.1), control,
                   constant.rule.step, constant.make_state(1))
    [ir] = [ir for sig, ir in kernels.update.inspect_llvm().items()
             if getattr(sig[-2], "dispatcher", None) is constant.rule.step][:1]
    calls = [line for line in ir.splitlines() if re.search(r"\bcall\b", line)]
    assert calls, "no calls at all: the IR was not read"
    assert not [line for line in calls if "rule_step" in line or "step_rules" in line]


def test_strategy_discovery_passes_over_the_step_rules_subpackage():
    from asgdbench.plugins.strategies import available_strategies

    strategies = available_strategies()
    assert {"seq", "lock", "hogwild", "leashed", "sync"} <= set(strategies)
    assert not set(strategies) & {"constant", "inverse", "fleet", "tail", "step_rules"}
    assert all(STEP_RULES.source(name)["kind"] == "built-in"
               for name in ("constant", "inverse", "fleet", "tail"))
