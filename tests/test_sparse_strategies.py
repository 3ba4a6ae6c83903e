"""The sparse paths of lock, Leashed-SGD (and its variants) and SYNC, driven kernel by kernel.

The evidence is memory, as in tests/test_leashed.py: every update's support is a fixed set S
and its values are all ``GRADIENT``, so the vector of version v is ``-v * UPDATE_VALUE`` on S
(float64: exact) and 0 off S. A read is checked against the version its token names; the
final vector against the number of APPLIED outcomes the threads counted; a stray write shows
off S. SYNC's rounds are checked against a NumPy reference of the mean of the sparse gradients
and against the dense round of the same gradients, bit for bit.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from numba import njit

from asgdbench.algorithms import leashed, sync
from asgdbench.algorithms.leashed import BEFORE_PUBLISH, SLOT_BITS, SLOT_MASK
from asgdbench.engine.consistency import GRADIENT, STEP, UPDATE_VALUE
from asgdbench.errors import PluginError
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.plugins.strategies import get_strategy, register_strategy, signature_problem
from asgdbench.primitives.atomics import mutex_lock, mutex_unlock
from asgdbench.primitives.gates import Actor, GateBoard
from asgdbench.primitives.protocol import (
    APPLIED,
    CONTROL_CELLS,
    DROPPED,
    MAX_UPDATES,
    MERGED,
    NOT_READ,
    STOP,
    STOP_FLAG,
)
from asgdbench.primitives.steps import sparse_copy_into, sparse_step_inplace, sparse_step_into

N_PARAMS = 2048
SUPPORT = np.arange(0, N_PARAMS, 2, dtype=np.int64)  # S: every other coordinate
OFF_SUPPORT = np.arange(1, N_PARAMS, 2, dtype=np.int64)


def _control(budget: int) -> np.ndarray:
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = budget
    return control


def _rule(threads: int):
    rule = parse_step_spec(None)
    return rule.rule.step, rule.make_state(threads)


# -- the shared steps ---------------------------------------------------------------------------

def test_the_sparse_steps_touch_only_the_support_and_the_publish_copies_its_base():
    rng = np.random.default_rng(1)
    base = rng.normal(size=50)
    support = np.array([3, 0, 49, 17], np.int64)
    values = rng.normal(size=4)
    dense = np.zeros(50)
    dense[support] = values

    params = base.copy()
    sparse_step_inplace(params, support, values, 3, 0.25)  # n_support < the buffer
    expected = base.copy()
    expected[support[:3]] -= 0.25 * values[:3]
    np.testing.assert_array_equal(params, expected)
    first_three = dense.copy()
    first_three[support[3]] = 0.0
    np.testing.assert_array_equal(params, base - 0.25 * first_three)  # the dense step's bits

    out = np.full(50, np.nan)  # a recycled slot: garbage everywhere
    sparse_step_into(out, base, support, values, 4, 0.25)
    np.testing.assert_array_equal(out, base - 0.25 * dense)  # the dense step, bit for bit

    local = np.full(50, np.nan)
    sparse_copy_into(local, base, support, 4)
    np.testing.assert_array_equal(local[support], base[support])
    assert np.isnan(np.delete(local, support)).all()


# -- stress: consistent reads, no update lost, nothing written off the support --------------------

TORN, REWRITTEN, APPLIED_COUNT = 0, 1, 2  # cells of a thread's line in the tally


@njit(nogil=True)
def _drive(read_sparse, update_sparse, state, tid, control, support, values, n_support, rule,
           rule_state, tally):
    """Thread ``tid``'s loop until the budget stops it: read the support, check it is the
    version the token names, "compute" (read it again a few times: nobody may rewrite it),
    update, count what was applied."""
    row = tid * 8
    while True:
        params, token = read_sparse(state, tid, control, support, n_support)
        if token == NOT_READ:
            return
        expected = -UPDATE_VALUE * token
        for k in range(n_support):
            if params[support[k]] != expected:
                tally[row + TORN] += 1
                break
        for _ in range(4):
            for k in range(n_support):
                if params[support[k]] != expected:
                    tally[row + REWRITTEN] += 1
                    break
        outcome, _, _, _ = update_sparse(state, tid, token, support, values, n_support, STEP,
                                         control, rule, rule_state)
        if outcome == APPLIED:
            tally[row + APPLIED_COUNT] += 1
        elif outcome == STOP:
            return


def _stress(strategy, threads: int, budget: int):
    rule, rule_state = _rule(threads)
    values = np.full(SUPPORT.size, GRADIENT)
    tally = np.zeros(threads * 8, np.int64)

    def drive(state, tid, control):
        _drive(strategy.read_sparse, strategy.update_sparse, state, tid, control, SUPPORT, values,
               SUPPORT.size, rule, rule_state, tally)

    warm = strategy.make_state(np.zeros(N_PARAMS), threads)
    drive(warm, 0, _control(0))  # compiled before the race: a budget of 0 stops at once
    strategy.retire(warm, 0)
    tally[:] = 0
    state = strategy.make_state(np.zeros(N_PARAMS), threads)
    control = _control(budget)
    workers = [threading.Thread(target=drive, args=(state, tid, control))
               for tid in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        if worker.is_alive():
            control[STOP_FLAG] = 1
            raise AssertionError("a thread did not stop at the budget")
    for tid in range(threads):
        strategy.retire(state, tid)
    return state, tally.reshape(threads, 8)


def _leashed_variant():
    return leashed.variant(name="leashed-sparse-test", summary="test")


@pytest.mark.parametrize("name", ["lock", "lock-per-step-copy", "leashed", "variant", "sync"])
def test_the_sparse_path_is_consistent_and_loses_no_update_with_more_threads_than_cores(name):
    """SYNC: 4 threads (1/m exact), its rounds are the updates (APPLIED by thread 0 only); the
    mean of m equal gradients is the gradient, so the closed form is the same."""
    strategy = _leashed_variant() if name == "variant" else get_strategy(name)
    budget = 2_000 if name == "sync" else 20_000
    state, tally = _stress(strategy, threads=4 if name == "sync" else 6, budget=budget)
    assert tally[:, TORN].sum() == 0, "a read was not the version its token names"
    assert tally[:, REWRITTEN].sum() == 0, "a read vector was rewritten while in use"
    assert tally[:, APPLIED_COUNT].sum() == budget
    final = strategy.final_params(state)
    np.testing.assert_array_equal(final[SUPPORT], -UPDATE_VALUE * budget)  # no update lost
    np.testing.assert_array_equal(final[OFF_SUPPORT], 0.0)  # nothing written off S
    if name in ("leashed", "variant"):
        inspected = strategy.inspect(state)
        assert inspected["latest_version"] == budget
        assert inspected["free_slots"] == inspected["slots_used"] - 1


# -- lock: the mutex around the sparse read and the sparse update ---------------------------------

@njit
def _lock(mutex):
    return mutex_lock(mutex)


@njit
def _unlock(mutex):
    return mutex_unlock(mutex)


@pytest.mark.parametrize("name", ["lock", "lock-per-step-copy"])
def test_a_sparse_read_waits_for_the_lock_and_copies_the_support_its_holder_wrote(name):
    strategy = get_strategy(name)
    state = strategy.make_state(np.zeros(8), 1)
    control = _control(10)
    support = np.array([1, 6], np.int64)
    strategy.read_sparse(state, 0, control, support, 2)  # compiled before the race
    assert _lock(state.mutex) == 0
    try:
        reader = Actor(lambda: strategy.read_sparse(state, 0, control, support, 2), "reader")
        time.sleep(0.2)
        assert reader.running, "the sparse read did not wait for the lock"
        state.params[:] = -1.0  # the holder's update: a new version, under the lock
        state.updates[0] = 1
    finally:
        assert _unlock(state.mutex) == 0
    vector, token = reader.result()
    assert token == 1
    np.testing.assert_array_equal(vector[support], [-1.0, -1.0])


@pytest.mark.parametrize("name", ["lock", "lock-per-step-copy"])
def test_a_sparse_update_waits_for_the_lock_and_counts_tau_exactly(name):
    strategy = get_strategy(name)
    state = strategy.make_state(np.zeros(8), 1)
    control = _control(10)
    rule, rule_state = _rule(1)
    support = np.array([5, 2], np.int64)
    values = np.array([1.0, 3.0])
    warm = strategy.make_state(np.zeros(8), 1)  # compiled before the race, on another state
    strategy.update_sparse(warm, 0, 0, support, values, 2, 0.5, _control(10), rule, rule_state)
    _, token = strategy.read_sparse(state, 0, control, support, 2)
    assert _lock(state.mutex) == 0
    try:
        updater = Actor(lambda: strategy.update_sparse(state, 0, token, support, values, 2, 0.5,
                                                       control, rule, rule_state), "updater")
        time.sleep(0.2)
        assert updater.running, "the sparse update did not wait for the lock"
        np.testing.assert_array_equal(state.params, 0.0)
        state.updates[0] = 3  # three updates applied by the holder meanwhile
    finally:
        assert _unlock(state.mutex) == 0
    assert updater.result() == (APPLIED, 3, 1, 0.5)
    np.testing.assert_array_equal(state.params, [0, 0, -1.5, 0, 0, -0.5, 0, 0])
    assert state.updates[0] == 4


# -- Leashed-SGD: the sparse read pins, the sparse publish is copy-of-base + step ------------------

class LeashedModel:
    """A Leashed state with gates; thread A updates on ``SUPPORT_A``, B on ``SUPPORT_B``."""

    SUPPORT_A = np.array([4, 5, 6, 7, 8, 9, 10, 11], np.int64)
    SUPPORT_B = np.array([0, 1, 2, 3, 4, 5, 6, 7], np.int64)

    def __init__(self, threads: int, strategy=None, tp: float = float("inf")) -> None:
        self.strategy = strategy or get_strategy("leashed")
        self.board = GateBoard(threads)
        state = self.strategy.make_state(np.zeros(64), threads, tp)
        self.state = state._replace(gates=self.board.array)
        self.control = _control(1 << 40)
        self.rule, self.rule_state = _rule(threads)
        self.values = np.full(8, GRADIENT)

    def read(self, tid: int, support: np.ndarray):
        return self.strategy.read_sparse(self.state, tid, self.control, support, support.size)

    def update(self, tid: int, token: int, support: np.ndarray):
        return self.strategy.update_sparse(self.state, tid, token, support, self.values,
                                           support.size, STEP, self.control, self.rule,
                                           self.rule_state)

    def step(self, tid: int, support: np.ndarray):
        _, token = self.read(tid, support)
        return self.update(tid, token, support)

    def latest(self) -> np.ndarray:
        return leashed.final_params(self.state)

    def stop(self) -> None:
        self.control[STOP_FLAG] = 1
        self.board.abort()


@pytest.fixture
def models():
    made: list[LeashedModel] = []
    yield made
    for model in made:
        model.stop()


def test_a_sparse_read_pins_the_vector_so_no_publish_recycles_it(models):
    """R reads v0 on the sparse path and computes while B publishes ten versions through a
    pool of five slots: R's vector is pinned (no copy), so it is never recycled under it."""
    m = LeashedModel(threads=2)
    models.append(m)
    R, B = range(2)
    held, token = m.read(R, m.SUPPORT_A)
    assert token == 0
    slot = int(m.state.mine[R * leashed.LINE + leashed.HELD])
    assert held is not None and np.shares_memory(held, m.state.pool[slot])
    for _ in range(10):
        assert m.step(B, m.SUPPORT_B)[0] == APPLIED
    np.testing.assert_array_equal(held, 0.0)  # still v0, whole: nobody wrote it
    outcome, staleness, attempts, _ = m.update(R, token, m.SUPPORT_A)
    assert (outcome, staleness, attempts) == (APPLIED, 10, 1)
    expected = np.zeros(64)
    expected[m.SUPPORT_B] -= 10 * UPDATE_VALUE
    expected[m.SUPPORT_A] -= UPDATE_VALUE
    np.testing.assert_array_equal(m.latest(), expected)
    for tid in range(2):
        leashed.retire(m.state, tid)
    assert len(leashed.free_slots(m.state)) == int(m.state.meta[leashed.SLOTS_USED]) - 1


def test_a_sparse_publish_that_loses_its_cas_retries_on_the_new_base(models):
    """A builds v1 on v0 and parks before its CAS; B publishes v1 first. A's CAS is lost and
    it retries: its second build, still parked before the CAS, is B's v1 plus A's sparse step
    (not v0 plus it), stamped v2, and that is what A publishes."""
    m = LeashedModel(threads=2)
    models.append(m)
    A, B = range(2)
    _, token = m.read(A, m.SUPPORT_A)
    m.board.arm(A, BEFORE_PUBLISH)
    publisher = Actor(lambda: m.update(A, token, m.SUPPORT_A), "A")
    m.board.wait_parked(A, BEFORE_PUBLISH)
    spare = int(m.state.mine[A * leashed.LINE + leashed.SPARE])
    first_build = np.zeros(64)
    first_build[m.SUPPORT_A] -= UPDATE_VALUE
    np.testing.assert_array_equal(m.state.pool[spare], first_build)  # v0 + A's step

    assert m.step(B, m.SUPPORT_B)[0] == APPLIED  # v1: A's CAS will be lost
    v1 = m.latest().copy()
    m.board.release(A)
    m.board.wait_parked(A, BEFORE_PUBLISH)  # the retry, built and stamped
    rebuilt = v1.copy()
    rebuilt[m.SUPPORT_A] -= UPDATE_VALUE
    np.testing.assert_array_equal(m.state.pool[spare], rebuilt)  # the new base + A's step
    assert int(m.state.refs[spare * leashed.LINE]) >> SLOT_BITS == 2
    m.board.disarm(A)
    m.board.release(A)
    assert publisher.result() == (APPLIED, 1, 2, STEP)
    assert int(m.state.latest[0]) >> SLOT_BITS == 2
    assert int(m.state.latest[0]) & SLOT_MASK == spare
    np.testing.assert_array_equal(m.latest(), rebuilt)


@njit(nogil=True)
def _give_up_at_once(state, attempts):
    return True


def test_a_variant_s_hooks_hold_on_its_sparse_path(models):
    """A variant gets the sparse path from the same factory: its ``gives_up`` drops A's sparse
    gradient after one lost CAS, whatever tp, and the gate before the CAS still parks it."""
    variant = leashed.variant(name="impatient-sparse", summary="test", gives_up=_give_up_at_once)
    assert signature_problem("update_sparse", variant.update_sparse) is None
    m = LeashedModel(threads=2, strategy=variant)
    models.append(m)
    A, B = range(2)
    _, token = m.read(A, m.SUPPORT_A)
    m.board.arm(A, BEFORE_PUBLISH)
    publisher = Actor(lambda: m.update(A, token, m.SUPPORT_A), "A")
    m.board.wait_parked(A, BEFORE_PUBLISH)
    assert m.step(B, m.SUPPORT_B)[0] == APPLIED
    m.board.disarm(A)
    m.board.release(A)
    assert publisher.result() == (DROPPED, 0, 1, STEP)
    expected = np.zeros(64)
    expected[m.SUPPORT_B] -= UPDATE_VALUE
    np.testing.assert_array_equal(m.latest(), expected)  # B's alone: A's was dropped


def test_the_sparse_build_releases_its_stamp_after_the_vector():
    from conftest import atomic_orderings

    state = leashed.make_state(np.zeros(8), 2)
    fresh = njit(nogil=True)(leashed.build_sparse_on_base.py_func)  # numba hides cached IR
    fresh(state, 1, 0, np.array([2], np.int64), np.array([1.0]), 1, STEP)
    assert atomic_orderings(fresh, "build_sparse_on_base")["store", "release"] >= 1


# -- SYNC: a round applies the mean of the sparse gradients ---------------------------------------

def _sync_round(state, control, rule, rule_state, supports, values):
    threads = len(supports)
    actors = [Actor(lambda t=t: sync.update_sparse(state, t, state.rounds[0], supports[t],
                                                    values[t], supports[t].size, 0.125, control,
                                                    rule, rule_state), f"t{t}")
              for t in range(threads)]
    return [actor.result() for actor in actors]


def _dense_round(state, control, rule, rule_state, grads):
    actors = [Actor(lambda t=t: sync.update(state, t, state.rounds[0], grads[t], 0.125, control,
                                            rule, rule_state), f"t{t}")
              for t in range(len(grads))]
    return [actor.result() for actor in actors]


def test_a_sync_round_applies_the_mean_of_the_sparse_gradients():
    """Four threads (more than cores), five rounds, random supports covering the slices'
    edges: after each round the vector is the NumPy reference (the m sparse steps of
    ``lr / m``, in thread order) and the dense round of the same gradients, bit for bit."""
    threads, n, rounds = 4, 37, 5
    rng = np.random.default_rng(7)
    init = rng.normal(size=n)
    sparse_state = sync.make_state(init, threads)
    dense_state = sync.make_state(init, threads)
    control = _control(rounds)
    rule, rule_state = _rule(threads)
    expected = init.copy()
    edges = np.array([0, 8, 9, 17, 18, 26, 27, 36], np.int64)  # slices [0,9) [9,18) [18,27) [27,37)
    for r in range(rounds):
        supports = [rng.permutation(np.union1d(rng.choice(n, 12, replace=False),
                                               edges if t == r % threads else []))
                    .astype(np.int64) for t in range(threads)]
        values = [rng.normal(size=s.size) for s in supports]
        grads = np.zeros((threads, n))
        for t in range(threads):
            grads[t, supports[t]] = values[t]
            expected[supports[t]] -= (0.125 * (1.0 / threads)) * values[t]
        outcomes = _sync_round(sparse_state, control, rule, rule_state, supports, values)
        assert outcomes == [(APPLIED, 0, 1, 0.125)] + [(MERGED, 0, 1, 0.125)] * (threads - 1)
        _dense_round(dense_state, control, rule, rule_state, grads)
        np.testing.assert_array_equal(sparse_state.params, expected)
        np.testing.assert_array_equal(sparse_state.params, dense_state.params)
        assert sync.read_sparse(sparse_state, 0, control, supports[0], 1)[1] == r + 1
    outcomes = _sync_round(sparse_state, control, rule, rule_state, supports, values)
    assert [o[0] for o in outcomes] == [STOP] * threads  # the budget: every thread stops alike
    np.testing.assert_array_equal(sparse_state.params, expected)


def test_a_sparse_sync_round_stops_without_deadlock_when_a_thread_never_comes():
    """Two of three threads publish their sparse gradients and wait for the third, which never
    comes: the stop flag releases them (STOP), and nothing is applied."""
    state = sync.make_state(np.zeros(16), 3)
    control = _control(10)
    rule, rule_state = _rule(3)
    support = np.array([1, 9], np.int64)
    values = np.array([1.0, 1.0])
    actors = [Actor(lambda t=t: sync.update_sparse(state, t, 0, support, values, 2, 0.5, control,
                                                    rule, rule_state), f"t{t}") for t in range(2)]
    time.sleep(0.3)
    assert all(actor.running for actor in actors), "a thread did not wait for the round"
    control[STOP_FLAG] = 1
    assert [actor.result()[0] for actor in actors] == [STOP, STOP]
    np.testing.assert_array_equal(state.params, 0.0)
    assert state.rounds[0] == 0


# -- registration: the sparse kernels are checked by name, and come in pairs ----------------------

@pytest.mark.parametrize("name,written", [("lock", 7), ("lock-per-step-copy", 7),
                                          ("leashed", 100), ("sync", 7)])
def test_the_built_ins_declare_a_sparse_path_and_what_an_update_writes(name, written):
    strategy = get_strategy(name)
    assert signature_problem("read_sparse", strategy.read_sparse) is None
    assert signature_problem("update_sparse", strategy.update_sparse) is None
    assert strategy.written_per_update(100, 7) == written
    assert strategy.written_per_update(100, 100) == 100  # the dense path: n_support = n_params


@njit(nogil=True)
def _update_sparse_misnamed(state, tid, token, values, support, n_support, lr, control, rule,
                            rule_state):
    return STOP, 0, 0, lr


def test_a_sparse_kernel_with_misnamed_parameters_or_without_its_pair_is_refused():
    lock = get_strategy("lock")
    with pytest.raises(PluginError, match="update_sparse has the wrong signature"):
        register_strategy(dataclasses.replace(lock, name="misnamed-sparse",
                                              update_sparse=_update_sparse_misnamed))
    with pytest.raises(PluginError, match="come together"):
        register_strategy(dataclasses.replace(lock, name="half-sparse", update_sparse=None))
