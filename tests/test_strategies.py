"""The strategies' guarantees under more threads than cores, checked on memory, not counters.

Two instruments, both with exact float64 arithmetic in which the vector of
version v is a known constant:

- the consistency probe workload through the real runner: the final vector
  after an exact update budget is a closed form, so a lost update is a wrong
  number; its gradient kernel counts torn reads;
- :func:`asgdbench.engine.consistency.consistency_stress`: every read is checked against
  the version its token names, and again after holding it, so a reader handed
  a recycled or rewritten vector is caught.

Every stress configuration runs afresh several times (a schedule that breaks a
strategy is rare; one run is a coin flip), at 3 and 16 threads by default and
33 and 64 threads in the ``slow`` stage.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import assert_probe_exact, probe_run, run_watched
from numba import njit

from asgdbench.engine.consistency import (
    GRADIENT,
    STEP,
    UPDATE_VALUE,
    _is_version,
    closed_form_ulps,
    consistency_stress,
)
from asgdbench.plugins.strategies import available_strategies
from asgdbench.plugins.workloads import load_workload
from asgdbench.primitives.rng import sample_batch, thread_states

CONSISTENT = tuple(name for name, s in available_strategies().items()
                   if s.consistent and s.max_threads != 1)
LEASHED_BOUNDS = ("leashed:tp=inf", "leashed:tp=0", "leashed:tp=1", "leashed:tp=4")
REPEATS = 5
UPDATES = 20_000
LONG_REPEATS, LONG_UPDATES = 20, 100_000  # the slow stage
THREADS = [3, 16, pytest.param(33, marks=pytest.mark.slow), pytest.param(64, marks=pytest.mark.slow)]
# SYNC averages m gradients: its arithmetic is exact only when m is a power of two
SYNC_THREADS = [4, 16, pytest.param(32, marks=pytest.mark.slow), pytest.param(64, marks=pytest.mark.slow)]


def test_the_built_in_consistent_strategies_are_the_expected_ones():
    assert set(CONSISTENT) == {"lock", "lock-per-step-copy", "leashed", "sync"}
    assert not available_strategies()["hogwild"].consistent


# -- SGD semantics -----------------------------------------------------------------

def test_seq_reproduces_numpy_sgd(numpy_mlp):
    """seq's trajectory equals plain NumPy SGD fed the same seeded minibatches."""
    seed, updates, window = 3, 400, 50
    result = run_watched("mlp-digits", "seq", 1, seed=seed, max_updates=updates,
                         target_loss=None, max_time=None, dtype="float64", window=window)
    workload = load_workload("mlp-digits", dtype="float64")
    X, y, _ = workload.train_data
    reference = numpy_mlp(workload.description["layer_sizes"])
    params = workload.init_params(seed)
    rng = thread_states(seed, 1)[0].copy()
    rows = np.empty(result.config.batch_size, np.int64)
    losses = []
    for _ in range(updates):
        sample_batch(rng, workload.n_samples, rows)
        loss, grad = reference.loss_and_gradient(params, X[rows], y[rows])
        params = params - result.config.lr * grad
        losses.append(loss)

    assert result.status == "budget"
    assert result.updates_applied == result.gradients_computed == updates
    np.testing.assert_allclose(result.final_params, params, rtol=1e-9, atol=1e-12)
    assert result.final_loss == pytest.approx(np.mean(losses[-window:]), rel=1e-9)
    assert result.test_loss == pytest.approx(workload.evaluate(params)["test_loss"], rel=1e-9)


# -- every read is the version it claims, whole, and stays so while held -------------

@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("spec", [*LEASHED_BOUNDS, "lock"])
def test_reads_are_whole_versions_that_nobody_rewrites(spec, threads):
    for _ in range(REPEATS):
        report = consistency_stress(spec, threads, UPDATES)
        assert report.clean, report
        assert report.final_is_exact, "an update was lost or applied twice"
        assert report.applied == UPDATES


@pytest.mark.slow
@pytest.mark.parametrize("threads", [3, 16, 33, 64])
@pytest.mark.parametrize("spec", ["leashed:tp=inf", "leashed:tp=0", "lock"])
def test_long_stress(spec, threads):
    for _ in range(LONG_REPEATS):
        report = consistency_stress(spec, threads, LONG_UPDATES, timeout_s=300)
        assert report.clean, report
        assert report.final_is_exact


@pytest.mark.parametrize("threads", SYNC_THREADS)
def test_sync_rounds_are_whole_versions(threads):
    report = consistency_stress("sync", threads, 500)
    assert report.clean, report
    assert report.final_is_exact  # m equal gradients averaged: one step per round


@pytest.mark.parametrize("threads", [3, 6])
def test_sync_rounds_at_thread_counts_that_are_not_powers_of_two(threads):
    """1/m is inexact there: the closed form holds within m ulps per round, and one lost
    round (a whole step) is still caught."""
    report = consistency_stress("sync", threads, 500)
    assert report.clean, report
    assert report.merged == 500 * (threads - 1) and report.ulps_per_update == threads
    assert report.no_lost_update
    lost_one = dataclasses.replace(report, final_params=report.final_params + UPDATE_VALUE)
    assert not lost_one.no_lost_update
    lost_share = dataclasses.replace(  # one thread's gradient missing from one round
        report, final_params=report.final_params + UPDATE_VALUE / threads)
    assert not lost_share.no_lost_update


@pytest.mark.parametrize("threads", [3, 5, 6, 7, 33, 1000])
def test_the_closed_form_slack_still_tells_neighbouring_versions_and_shares_apart(threads):
    """The slack never reaches a quarter of one merged share, however long the run."""
    ulps = closed_form_ulps(threads)
    assert ulps == threads
    share = UPDATE_VALUE / threads
    for token in (1, 10, 1_000, 100_000, 10_000_000, 10**9):
        exact = -UPDATE_VALUE * token
        assert _is_version(exact, token, ulps, threads, np.empty(0))
        for wrong in (exact - UPDATE_VALUE, exact + UPDATE_VALUE, exact - share, exact + share):
            assert not _is_version(wrong, token, ulps, threads, np.empty(0)), (token, wrong)
    assert closed_form_ulps(4) == closed_form_ulps(16) == 0  # exact: no slack at all
    assert not _is_version(-UPDATE_VALUE * 7 + 1e-15, 7, 0, 4, np.empty(0))


def test_honest_sync_rounding_stays_within_the_slack():
    """SYNC's arithmetic replayed for a long run (m shares of ``lr * fl(1/m) * c`` a round,
    each subtraction rounding): the error stays inside the slack the check allows."""
    for threads in (3, 5, 6, 7, 33, 63):
        values = sync_replay(threads, 1_000_000, 50_000)
        for index, value in enumerate(values):
            token = (index + 1) * 50_000
            assert _is_version(value, token, closed_form_ulps(threads), threads, np.empty(0)), \
                (threads, token, value)


@njit
def sync_replay(threads, rounds, every):
    """The vector component after every ``every`` rounds of SYNC's dense arithmetic."""
    share_step = STEP * (1.0 / threads)
    value = 0.0
    out = np.empty(rounds // every)
    for token in range(1, rounds + 1):
        for _ in range(threads):
            value -= share_step * GRADIENT
        if token % every == 0:
            out[token // every - 1] = value
    return out


@pytest.mark.parametrize("threads", [16, pytest.param(64, marks=pytest.mark.slow)])
def test_hogwild_is_caught_by_the_same_checks(threads):
    """The instrument can fail: HOGWILD! tears reads and rewrites what others hold."""
    reports = [consistency_stress("hogwild", threads, UPDATES) for _ in range(REPEATS)]
    assert sum(r.torn_reads + r.changed_while_held for r in reports) > 0


def test_hogwild_races_on_the_vector_but_not_on_its_budget():
    """Its update ticket is one atomic add: exactly the budget is applied, by 16 threads."""
    report = consistency_stress("hogwild", 16, UPDATES)
    assert report.applied == report.computed == UPDATES


def test_hogwild_takes_its_ticket_with_one_atomic_add():
    """Two threads rarely meet inside a plain ``+= 1`` on 2 busy cores, so the stress above
    seldom sees a non-atomic ticket; the generated code always does."""
    from conftest import atomic_orderings
    from numba import njit

    from asgdbench.algorithms import hogwild
    from asgdbench.plugins.step_rules import parse_step_spec
    from asgdbench.primitives.protocol import CONTROL_CELLS, MAX_UPDATES

    constant = parse_step_spec("constant")
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = 1
    # the ticket is taken in apply_racy, the update of both HOGWILD! variants; a fresh
    # compile, since numba hides the IR of cached code
    fresh = njit(nogil=True)(hogwild.apply_racy.py_func)
    params, tickets = hogwild.make_state(np.zeros(4), 1)
    fresh(params, tickets, 0, 0, np.zeros(4), 0.1, control, constant.rule.step,
          constant.make_state(1))
    assert atomic_orderings(fresh, "apply_racy")["atomicrmw", "seq_cst"] >= 1


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("tp", [0, 1, 4])
def test_the_persistence_bound_holds(tp, threads):
    for _ in range(REPEATS):
        report = consistency_stress(f"leashed:tp={tp}", threads, UPDATES)
        assert report.max_attempts <= tp + 1
        assert report.final_is_exact and report.clean


# -- through the real runner -----------------------------------------------------------

@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("strategy", ["lock", "leashed:tp=inf", "leashed:tp=0"])
def test_no_update_is_lost_in_a_run(strategy, threads):
    for _ in range(REPEATS):
        result = probe_run(strategy, threads, UPDATES)
        assert result.status == "budget"
        assert result.updates_applied == UPDATES
        assert result.evaluation["torn_reads"] == 0
        assert_probe_exact(result, UPDATES)


@pytest.mark.parametrize("threads", SYNC_THREADS)
def test_no_sync_round_is_lost_in_a_run(threads):
    updates = 500
    for _ in range(1):
        result = probe_run("sync", threads, updates)
        assert result.status == "budget"
        assert result.updates_applied == updates
        assert result.evaluation["torn_reads"] == 0
        assert_probe_exact(result, updates)


@pytest.mark.parametrize("threads", [8, 16])
def test_hogwild_tears_reads_in_a_run(threads):
    """The runner's torn-read count is live: HOGWILD! shows some."""
    torn = [probe_run("hogwild", threads, UPDATES).evaluation["torn_reads"] for _ in range(REPEATS)]
    assert sum(torn) > 0


# -- bounded memory ------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, *THREADS])
def test_leashed_memory_stays_bounded_and_every_vector_comes_back(threads):
    for _ in range(REPEATS):
        report = consistency_stress("leashed:tp=inf", threads, UPDATES)
        assert report.error == 0, "the pool ran out: a vector leaked"
        used = int(report.state.meta[8])  # SLOTS_USED
        assert 2 <= used <= 2 * threads + 1
        from asgdbench.algorithms import leashed

        free = leashed.free_slots(report.state)
        latest = leashed.latest_slot(report.state)
        assert sorted(free + [latest]) == list(range(used)), "a vector leaked or is listed twice"
        assert leashed.latest_version(report.state) == UPDATES


def test_peak_memory_is_reported_in_bytes_of_the_vectors_used():
    result = probe_run("leashed:tp=inf", 8, UPDATES)
    assert 2 <= result.peak_param_vectors <= 17
    assert result.peak_param_bytes == result.peak_param_vectors * result.final_params.nbytes
    assert result.strategy_state["free_slots"] == result.peak_param_vectors - 1


# -- SYNC ----------------------------------------------------------------------------

def test_sync_merges_every_gradient_of_a_round():
    threads, rounds = 16, 500
    result = probe_run("sync", threads, rounds)
    assert result.status == "budget"
    assert result.updates_applied == rounds
    assert result.gradients_computed == threads * rounds  # every thread took part in every round
    assert_probe_exact(result, rounds)


# -- the README's plugin -----------------------------------------------------------------

def test_the_readme_plugin_passes_the_consistency_check(tmp_path):
    """The README's spin-lock strategy and its consistency check, run as the README shows them."""
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Adding a strategy", 1)[1]
    plugin, check = section.split("```python\n")[1:3]
    (tmp_path / "spinlock.py").write_text(plugin.split("```", 1)[0])
    script = check.split("```", 1)[0].replace("threads=16", "threads=8")
    out = subprocess.run([sys.executable, "-c", script + "\nprint('checked', report)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "checked" in out.stdout and "torn_reads=0" in out.stdout


# A strategy with a state class of its own and the default retire, as a plugin writes it.
NAMED_STATE_PLUGIN = """
from typing import NamedTuple
import numpy as np
from numba import njit
from asgdbench import Strategy, register_strategy
from asgdbench.primitives import APPLIED, MAX_UPDATES, STOP, fetch_add, load, rule_step
from asgdbench.primitives import sgd_step_inplace

class TicketState(NamedTuple):
    params: np.ndarray
    tickets: np.ndarray

@njit(nogil=True, cache=True)
def read(state, tid, control):
    return state.params, load(state.tickets, 0, "monotonic")

@njit(nogil=True)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    ticket = fetch_add(state.tickets, 0, 1)
    if ticket >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    step = rule_step(rule, rule_state, lr, ticket - token, tid)
    sgd_step_inplace(state.params, grad, step)
    return APPLIED, ticket - token, 1, step

register_strategy(Strategy(name="ticket", summary="test", read=read, update=update,
                           make_state=lambda p, n: TicketState(p.copy(), np.zeros(8, np.int64))))
"""

RUN_ONE = """
import sys
from asgdbench.engine.runner import run
if len(sys.argv) > 2:
    from asgdbench.plugins.files import load_plugin_file
    load_plugin_file(sys.argv[2])
result = run("probe", sys.argv[1], 1, max_updates=10, max_time=None, target_loss=None,
             dtype="float64")
print(result.status, result.updates_applied)
"""


def test_a_plugin_state_class_never_reaches_a_cache_the_built_ins_share(tmp_path):
    """The plugin runs with the shared default ``retire``; a later process without the plugin
    must still load what the built-ins share (a plugin's class in a shared cache index would
    make it fail: ModuleNotFoundError while numba unpickles the index)."""
    import os
    import subprocess
    import sys

    from asgdbench.caching import ENV_VAR

    plugin = tmp_path / "ticket.py"
    plugin.write_text(NAMED_STATE_PLUGIN)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               **{ENV_VAR: str(tmp_path / "loops")})
    for args in (["ticket", str(plugin)], ["hogwild"]):
        done = subprocess.run([sys.executable, "-c", RUN_ONE, *args], capture_output=True,
                              text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-2:] == ["budget", "10"]
