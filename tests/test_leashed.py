"""Leashed-SGD under the interleavings that break lock-free code, replayed exactly.

Each test drives the real kernels from real threads and parks them at the
test-only gate points (:mod:`asgdbench.primitives.gates`) to force one schedule step by
step. The evidence is memory itself: a vector of version v is ``-v * 2^-8`` in
every component (zero start, gradient 0.5, step 2^-7, float64: exact), so a
reader's vector either is the version its token names, unchanged until it lets
go, or the test fails; the pool's bookkeeping is checked against the set of
slots that must be live.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba import njit

from asgdbench.algorithms import leashed
from asgdbench.algorithms.leashed import (
    BEFORE_PUBLISH,
    COUNT_MASK,
    LINE,
    MAX_VERSION,
    PIN_CHECKED,
    PIN_LOADED_LATEST,
    PIN_PINNED,
    POP_LOADED,
    SLOT_BITS,
    SLOTS_USED,
    TAKING_SPARE,
    live_slots,
    pack,
    pop_free,
    push_free,
    read,
    retire,
    update,
)
from asgdbench.engine.consistency import GRADIENT, STEP, UPDATE_VALUE
from asgdbench.engine.runner import UNLIMITED_UPDATES, run
from asgdbench.errors import ConfigError
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.primitives.gates import Actor, GateBoard, gate
from asgdbench.primitives.protocol import (
    APPLIED,
    CONTROL_CELLS,
    DROPPED,
    ERROR,
    MAX_UPDATES,
    NOT_READ,
    STOP,
    STOP_FLAG,
)

N_PARAMS = 64


_MODELS: list["Model"] = []


@pytest.fixture(autouse=True)
def _stop_every_model():
    """Whatever a test did, no thread it started spins on after it (a failed schedule included)."""
    yield
    while _MODELS:
        model = _MODELS.pop()
        model.control[STOP_FLAG] = 1
        model.board.abort()


class Model:
    """A Leashed state with gates, and the kernels called as thread ``tid`` would."""

    def __init__(self, threads: int, tp: float = float("inf"), step: str | None = None,
                 update: Any = update) -> None:
        _MODELS.append(self)
        self.board = GateBoard(threads)
        state = leashed.make_state(np.zeros(N_PARAMS), threads, tp)
        self.state = state._replace(gates=self.board.array)
        self.control = np.zeros(CONTROL_CELLS, np.int64)
        self.control[MAX_UPDATES] = UNLIMITED_UPDATES
        self.grad = np.full(N_PARAMS, GRADIENT)
        rule = parse_step_spec(step)
        self.rule, self.rule_state = rule.rule.step, rule.make_state(threads)
        self.update_kernel = update  # Leashed-SGD's, or a variant's

    def read(self, tid: int) -> tuple[np.ndarray, int]:
        return read(self.state, tid, self.control)

    def update(self, tid: int, token: int) -> tuple[int, int, int, float]:
        """(outcome, staleness, attempts, step), as the kernel returns them."""
        return self.update_kernel(self.state, tid, token, self.grad, STEP, self.control,
                                  self.rule, self.rule_state)

    def step(self, tid: int) -> tuple[int, int, int, float]:
        """One whole read + update by thread ``tid``."""
        _, token = self.read(tid)
        return self.update(tid, token)

    def race_to_publish(self, loser: int, winner: int, token: int) -> tuple[tuple, tuple]:
        """``loser``'s update (of a read that returned ``token``) parked just before its CAS
        while ``winner`` makes a whole read + update, then let go: both outcomes."""
        self.board.arm(loser, BEFORE_PUBLISH)
        publisher = Actor(lambda: self.update(loser, token), f"thread {loser}")
        self.board.wait_parked(loser, BEFORE_PUBLISH)
        won = self.step(winner)
        self.board.disarm(loser)
        self.board.release(loser)
        return won, publisher.result()

    def latest(self) -> tuple[int, int]:
        word = int(self.state.latest[0])
        return word >> SLOT_BITS, word & ((1 << SLOT_BITS) - 1)

    def reference(self, slot: int) -> tuple[int, int]:
        word = int(self.state.refs[slot * LINE])
        return word >> SLOT_BITS, word & COUNT_MASK

    def assert_quiescent(self, applied: int) -> None:
        """No thread holds anything: the pool is exactly one live vector plus free slots."""
        version, slot = self.latest()
        assert version == applied
        np.testing.assert_array_equal(self.state.pool[slot], -UPDATE_VALUE * applied)
        assert self.reference(slot) == (version, 1)  # held by ``latest`` alone
        free = leashed.free_slots(self.state)
        used = int(self.state.meta[leashed.SLOTS_USED])
        assert len(set(free)) == len(free), f"a slot is on the free list twice: {free}"
        assert slot not in free, "the latest vector is on the free list"
        assert sorted(free + [slot]) == list(range(used))
        assert all(self.reference(s)[1] == 0 for s in free)


def assert_version(params: np.ndarray, token: int) -> None:
    np.testing.assert_array_equal(params, -UPDATE_VALUE * token)


# -- use-after-recycle ---------------------------------------------------------------

def test_a_reader_never_pins_a_recycled_vector():
    """The schedule of issue 7: a stale publisher and a stale reader meet on a recycled slot.

    A is preempted right after loading ``latest`` (v0) while D keeps v0 alive;
    B publishes v1; reader R loads ``latest`` (v1) and is preempted; B publishes
    v2, which frees v1's slot. A resumes and builds a new vector; R resumes and
    pins. With the earlier pin-then-take order A took v1's freed slot and
    stamped it v1 again, R pinned it, and A rewrote it under R's feet.
    """
    m = Model(threads=4)
    A, B, R, D = range(4)
    _, token_a = m.read(A)
    held_d, token_d = m.read(D)
    m.board.arm(A, PIN_LOADED_LATEST)
    publisher = Actor(lambda: m.update(A, token_a), "A")
    m.board.wait_parked(A, PIN_LOADED_LATEST)

    assert m.step(B)[0] == APPLIED  # v1
    m.board.arm(R, PIN_LOADED_LATEST)
    reader = Actor(lambda: m.read(R), "R")
    m.board.wait_parked(R, PIN_LOADED_LATEST)
    assert m.step(B)[0] == APPLIED  # v2: v1's slot is free again

    m.board.disarm(A, PIN_LOADED_LATEST)
    m.board.arm(A, BEFORE_PUBLISH)
    m.board.release(A)
    m.board.wait_parked(A, BEFORE_PUBLISH)  # A's new vector is written and stamped
    m.board.disarm(R)
    m.board.release(R)
    held_r, token_r = reader.result()
    assert_version(held_r, token_r)
    snapshot = held_r.copy()

    m.board.disarm(A)
    m.board.release(A)
    assert publisher.result()[0] == APPLIED
    np.testing.assert_array_equal(held_r, snapshot)  # nobody wrote the vector R holds
    assert_version(held_d, token_d)  # nor the one D holds

    assert m.update(R, token_r)[0] == APPLIED
    assert m.update(D, token_d)[0] == APPLIED
    for tid in range(4):
        retire(m.state, tid)
    m.assert_quiescent(applied=5)


def test_a_pin_is_only_kept_if_latest_still_names_it():
    """A reader preempted between loading ``latest`` and pinning gets the newest vector anyway."""
    m = Model(threads=3)
    R, B, D = range(3)
    held_d, token_d = m.read(D)  # keeps v0 pinnable
    m.board.arm(R, PIN_LOADED_LATEST)
    reader = Actor(lambda: m.read(R), "R")
    m.board.wait_parked(R, PIN_LOADED_LATEST)  # R saw v0
    assert m.step(B)[0] == APPLIED
    assert m.step(B)[0] == APPLIED
    m.board.disarm(R)
    m.board.release(R)
    held_r, token_r = reader.result()
    assert token_r == 2  # not the stale v0 it first saw
    assert_version(held_r, token_r)
    assert m.update(R, token_r)[0] == APPLIED
    assert m.update(D, token_d)[0] == APPLIED
    for tid in range(3):
        retire(m.state, tid)
    m.assert_quiescent(applied=4)


def test_a_pin_checks_the_version_not_just_a_live_count():
    """A stale reader meets its old slot reborn as a stamped, unpublished spare.

    R saw ``latest`` = (v1, S) and was preempted; S was freed and became A's
    spare, stamped v3 (count 1). A pin that checked only "count > 0" would take
    S; A's retry then re-stamps S over R's reference, publishes it, and R's
    unpin frees the latest vector.
    """
    m = Model(threads=3)
    A, B, R = range(3)
    assert m.step(B)[0] == APPLIED  # v1 in slot S = 1
    _, slot_s = m.latest()
    m.board.arm(R, PIN_LOADED_LATEST)
    reader = Actor(lambda: m.read(R), "R")
    m.board.wait_parked(R, PIN_LOADED_LATEST)  # R holds the word (v1, S)
    assert m.step(B)[0] == APPLIED  # v2: S is free again
    _, token_a = m.read(A)
    m.board.arm(A, BEFORE_PUBLISH)
    publisher = Actor(lambda: m.update(A, token_a), "A")
    m.board.wait_parked(A, BEFORE_PUBLISH)
    assert m.reference(slot_s) == (3, 1), "A's spare should be S, stamped v3"

    m.board.disarm(R, PIN_LOADED_LATEST)
    m.board.arm(R, PIN_PINNED)
    m.board.release(R)
    m.board.wait_parked(R, PIN_PINNED)  # R pinned something; it has not re-checked latest yet
    assert m.step(B)[0] == APPLIED  # v3 elsewhere: A's CAS will fail and A will retry
    m.board.release(A)
    m.board.step(A, BEFORE_PUBLISH, then_disarm=True)  # A re-stamped S (v4) and publishes it
    assert publisher.result()[0] == APPLIED
    m.board.disarm(R)
    m.board.release(R)
    held_r, token_r = reader.result()
    assert token_r == 4
    assert_version(held_r, token_r)
    assert m.update(R, token_r)[0] == APPLIED
    for tid in range(3):
        retire(m.state, tid)
    m.assert_quiescent(applied=5)


def test_the_spare_is_taken_before_the_base_is_pinned():
    """Invariant (I) needs the order: take the spare, then pin the base.

    A is preempted just before taking its spare. Meanwhile B publishes v1 in
    slot S, a reader R sees (v1, S), and B publishes v2, freeing S. A takes S.
    Had A pinned its base (v0) before this, it would stamp S with v1 again and
    R would pin a slot that A then rewrites and re-stamps under R's reference.
    """
    m = Model(threads=3)
    A, B, R = range(3)
    _, token_a = m.read(A)
    m.board.arm(A, TAKING_SPARE)
    publisher = Actor(lambda: m.update(A, token_a), "A")
    m.board.wait_parked(A, TAKING_SPARE)
    assert m.step(B)[0] == APPLIED  # v1 in slot S
    _, slot_s = m.latest()
    m.board.arm(R, PIN_LOADED_LATEST)
    reader = Actor(lambda: m.read(R), "R")
    m.board.wait_parked(R, PIN_LOADED_LATEST)  # R holds the word (v1, S)
    assert m.step(B)[0] == APPLIED  # v2: S is free
    assert slot_s in leashed.free_slots(m.state)

    m.board.disarm(A, TAKING_SPARE)
    m.board.arm(A, BEFORE_PUBLISH)
    m.board.release(A)
    m.board.wait_parked(A, BEFORE_PUBLISH)  # A took S, built on some base, stamped S
    m.board.disarm(R, PIN_LOADED_LATEST)
    m.board.arm(R, PIN_PINNED)
    m.board.release(R)
    m.board.wait_parked(R, PIN_PINNED)
    m.board.disarm(A)
    m.board.release(A)  # A publishes now, or fails, retries and re-stamps S, then publishes
    assert publisher.result()[0] == APPLIED
    m.board.disarm(R)
    m.board.release(R)
    held_r, token_r = reader.result()
    assert_version(held_r, token_r)
    assert m.update(R, token_r)[0] == APPLIED
    for tid in range(3):
        retire(m.state, tid)
    m.assert_quiescent(applied=4)


def test_a_stale_reader_leaves_a_free_slot_alone():
    """R checked that (v1, S) was live; S was freed before R's pin. R must not touch a free slot.

    A pin that adds to the count blindly instead of by a CAS on the word it
    checked would revive S for a moment and, letting go, push it onto the free
    list a second time.
    """
    m = Model(threads=2)
    R, B = range(2)
    assert m.step(B)[0] == APPLIED  # v1 in slot S
    _, slot_s = m.latest()
    m.board.arm(R, PIN_CHECKED)
    reader = Actor(lambda: m.read(R), "R")
    m.board.wait_parked(R, PIN_CHECKED)  # R saw S live, with v1
    assert m.step(B)[0] == APPLIED  # v2: S is free
    free_before = leashed.free_slots(m.state)
    assert slot_s in free_before and m.reference(slot_s)[1] == 0
    m.board.disarm(R)
    m.board.release(R)
    held, token = reader.result()
    assert token == 2
    assert_version(held, token)
    assert leashed.free_slots(m.state) == free_before  # untouched: not pushed again
    assert m.update(R, token)[0] == APPLIED
    for tid in range(2):
        retire(m.state, tid)
    m.assert_quiescent(applied=3)


# -- the persistence bound -----------------------------------------------------------

@pytest.mark.parametrize("tp, outcome, attempts", [(0, DROPPED, 1), (1, APPLIED, 2)])
def test_a_lost_race_drops_or_retries_as_the_bound_says(tp, outcome, attempts):
    m = Model(threads=2, tp=tp)
    A, B = range(2)
    _, token = m.read(A)
    won, lost = m.race_to_publish(A, B, token)
    assert won[0] == APPLIED  # B publishes first: A's CAS must fail
    got, staleness, tries, _ = lost
    assert (got, tries) == (outcome, attempts)
    if outcome == APPLIED:
        assert staleness == 1  # built on B's update, read before it
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=1 + (outcome == APPLIED))


def test_a_dropped_attempt_keeps_its_spare_and_the_next_update_builds_in_it():
    """tp=0: A loses its CAS and drops; its spare stays its own (not leaked, not freed), and
    A's next update builds in that same slot: each dropped attempt costs no slot."""
    m = Model(threads=2, tp=0)
    A, B = range(2)
    _, token = m.read(A)
    won, lost = m.race_to_publish(A, B, token)
    assert won[0] == APPLIED
    assert lost == (DROPPED, 0, 1, STEP)
    kept = int(m.state.mine[A * LINE + leashed.SPARE])
    assert kept != leashed.NO_SLOT and kept not in leashed.free_slots(m.state)
    assert m.step(A) == (APPLIED, 0, 1, STEP)
    assert m.latest() == (2, kept)  # published from the spare it kept
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=2)


def test_a_retry_recomputes_staleness_and_step_against_its_new_base():
    """With ``inverse``: A's first attempt builds on v0 (τ 0, full step); B publishes v1
    first; A's retry builds on v1, so its τ is 1 and it publishes with half the step."""
    m = Model(threads=2, step="inverse")
    A, B = range(2)
    _, token = m.read(A)
    won, lost = m.race_to_publish(A, B, token)  # A's attempt 1 built first: v0 - STEP * g
    assert won == (APPLIED, 0, 1, STEP)  # v1 = -UPDATE_VALUE
    assert lost == (APPLIED, 1, 2, STEP / 2)
    version, slot = m.latest()
    assert version == 2
    # v2 = v1 - (STEP / 2) * g: the retry's step, not the first attempt's (that would be -2 UPDATE_VALUE)
    np.testing.assert_array_equal(m.state.pool[slot], -1.5 * UPDATE_VALUE)


# -- the free list -------------------------------------------------------------------

def test_free_list_pop_survives_aba():
    """A pop preempted between reading the head and its CAS, while the head is popped and pushed back."""
    m = Model(threads=2)
    X, Y = range(2)
    for slot in (3, 2, 1):
        push_free(m.state, slot)  # list: 1 -> 2 -> 3
    m.board.arm(X, POP_LOADED)
    popper = Actor(lambda: pop_free(m.state, X), "X")
    m.board.wait_parked(X, POP_LOADED)  # X read head 1, next 2
    first, second = pop_free(m.state, Y), pop_free(m.state, Y)
    assert (first, second) == (1, 2)
    push_free(m.state, first)  # head is 1 again, now followed by 3
    m.board.disarm(X)
    m.board.release(X)
    got = popper.result()
    held = {got, second}
    assert len(held) == 2, "one slot was handed out twice"
    free = leashed.free_slots(m.state)
    assert not held & set(free), f"held slots {held} are also on the free list {free}"
    assert sorted(free + sorted(held)) == [1, 2, 3]


# -- version overflow ------------------------------------------------------------------

def test_versions_stop_at_the_limit_instead_of_wrapping():
    m = Model(threads=1)
    start = MAX_VERSION - 2
    m.state.latest[0] = pack(start, 0)
    m.state.refs[0] = pack(start, 1)
    m.state.pool[0] = -UPDATE_VALUE * start
    outcomes = [m.step(0)[0] for _ in range(4)]
    assert outcomes == [APPLIED, APPLIED, STOP, STOP]
    version, slot = m.latest()
    assert version == MAX_VERSION
    assert m.state.latest[0] > 0 and m.reference(slot) == (MAX_VERSION, 1)


def test_a_budget_beyond_the_version_limit_is_refused():
    with pytest.raises(ConfigError, match="at most"):
        run("probe", "leashed", 1, max_updates=MAX_VERSION + 1, dtype="float64")


# -- stopping ------------------------------------------------------------------------

def test_a_pin_that_cannot_succeed_gives_up_when_the_run_stops():
    """A corrupt pool (latest's count is 0) makes pins spin; the stop flag still ends them."""
    m = Model(threads=1)
    m.state.refs[0] = pack(0, 0)
    reader = Actor(lambda: m.read(0), "reader")
    time.sleep(0.2)
    assert reader.running  # spinning, as it must: there is nothing valid to pin
    m.control[STOP_FLAG] = 1
    assert reader.result()[1] == NOT_READ


def test_an_update_whose_pin_cannot_succeed_ends_when_the_run_stops():
    """The stop path inside ``update``: A has dropped its read pin and taken its spare when the
    pool turns corrupt (latest's count 0), so its base pin spins; the stop flag must end it."""
    m = Model(threads=1)
    _, token = m.read(0)
    m.board.arm(0, TAKING_SPARE)
    publisher = Actor(lambda: m.update(0, token), "A")
    m.board.wait_parked(0, TAKING_SPARE)
    assert m.reference(0) == (0, 1)  # the read pin is gone: latest's reference alone
    m.state.refs[0] = pack(0, 0)
    m.board.disarm(0)
    m.board.release(0)
    time.sleep(0.2)
    assert publisher.running  # spinning, as it must: there is nothing valid to pin
    m.control[STOP_FLAG] = 1
    assert publisher.result() == (STOP, 0, 0, STEP)
    assert m.latest() == (0, 0)  # nothing was published


@pytest.mark.parametrize("tp", [float("inf"), 2])
def test_a_publisher_that_lost_its_race_does_not_retry_after_the_stop(tp):
    """A's CAS fails (B published first) and the run stops meanwhile: A's retry would pin the new
    latest without a hitch and publish after the stop; it must end with STOP instead."""
    m = Model(threads=2, tp=tp)
    A, B = range(2)
    _, token = m.read(A)
    m.board.arm(A, BEFORE_PUBLISH)
    publisher = Actor(lambda: m.update(A, token), "A")
    m.board.wait_parked(A, BEFORE_PUBLISH)
    assert m.step(B)[0] == APPLIED  # v1: A's CAS must fail
    m.control[STOP_FLAG] = 1
    m.board.disarm(A)
    m.board.release(A)
    assert publisher.result() == (STOP, 0, 1, STEP)
    assert m.latest()[0] == 1  # A published nothing after the stop
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=1)


def test_the_persistence_bound_never_exceeds_tp_plus_one_attempts_under_stress():
    from asgdbench.engine.consistency import consistency_stress

    report = consistency_stress("leashed:tp=2", 16, 20_000)
    assert report.max_attempts <= 3
    assert report.final_is_exact
    assert report.applied == 20_000


# -- the 2m + 1 bound -------------------------------------------------------------------

@pytest.mark.parametrize("threads", [3, 5])
def test_every_thread_at_its_worst_moment_at_once_stays_within_the_pool(threads):
    """The bound's argument is per thread: at most two slots (a spare and a pinned vector).

    Every thread but the last reads a version of its own, then (after a publish by the last
    thread) takes its spare and pins a newer base, and parks there with the base pinned,
    while the last thread publishes on, reads the newest version and parks the same way.
    With each stale thread's read, base and spare distinct, a thread that still held its
    read pin at that moment would need 3m - 1 slots, more than the 2m + 1 there are.
    Here the pool must hold exactly the stale threads' bases, the latest and every
    spare, and every vector a parked thread pinned must be its version, untouched.
    """
    m = Model(threads=threads)
    *stale, last = range(threads)
    tokens = {}
    for tid in stale:  # each stale thread reads a version of its own
        _, tokens[tid] = m.read(tid)
        assert m.step(last)[0] == APPLIED
    pinned = {}
    for tid in stale:  # each takes its spare and pins a newer base: there it parks
        assert m.step(last)[0] == APPLIED
        m.board.arm(tid, PIN_PINNED)
        pinned[tid] = (m.latest(), Actor(lambda tid=tid: m.update(tid, tokens[tid]), f"T{tid}"))
        m.board.wait_parked(tid, PIN_PINNED)
    assert m.step(last)[0] == APPLIED
    _, token = m.read(last)
    m.board.arm(last, PIN_PINNED)
    pinned[last] = (m.latest(), Actor(lambda: m.update(last, token), f"T{last}"))
    m.board.wait_parked(last, PIN_PINNED)

    assert m.control[ERROR] == 0, "a spare was refused: the pool ran out"
    bases = {slot for (_, slot), _ in pinned.values()}
    spares = set(m.state.mine[leashed.SPARE::LINE].tolist())
    assert len(bases) == threads and len(spares) == threads and not bases & spares
    assert live_slots(m.state, threads) == 2 * threads <= 2 * threads + 1
    assert m.state.meta[SLOTS_USED] <= 2 * threads + 1
    for (version, slot), _ in pinned.values():
        assert m.reference(slot) == (version, 1 + (slot == m.latest()[1]))  # + latest's
        assert_version(m.state.pool[slot], version)
    for tid, (_, publisher) in pinned.items():
        m.board.disarm(tid)
        m.board.release(tid)
        assert publisher.result()[0] == APPLIED
    for tid in range(threads):
        retire(m.state, tid)
    m.assert_quiescent(applied=2 * (threads - 1) + 1 + threads)


def test_a_spare_beyond_the_pool_is_refused_and_fails_the_run():
    """``take_spare``'s guard: with all 2m + 1 slots handed out and none free, the next spare
    is refused (ERROR set, the update STOPs) and nothing is written past the pool."""
    m = Model(threads=1)
    capacity = m.state.pool.shape[0]
    rows = np.full((capacity + 1, N_PARAMS), 7.0)  # one guard row past the pool
    rows[:capacity] = m.state.pool
    m.state = m.state._replace(pool=rows[:capacity])
    m.state.meta[SLOTS_USED] = capacity  # every slot handed out; the free list is empty
    _, token = m.read(0)
    assert m.update(0, token) == (STOP, 0, 0, STEP)
    assert m.control[ERROR] == 1
    assert m.state.meta[SLOTS_USED] == capacity  # the refused claim is given back
    np.testing.assert_array_equal(rows[capacity], 7.0)
    assert m.latest() == (0, 0)


# -- memory orderings, which x86 code cannot show -------------------------------------

# Per kernel, the orderings its own code needs (the generated code may hold more, inlined
# from callees). Acquire loads pair with the seq_cst CAS that publishes a vector and the
# release stores of stamps, so a pinned vector's contents and stamp are seen whole.
LEASHED_ORDERINGS = {
    "pin_latest": {("load", "acquire"): 3,  # latest, the slot's reference word, latest again
                   ("load", "monotonic"): 1},  # the stop flag, with an atomic load
    "update": {("store", "release"): 1,  # the stamp: written after the vector, seen before it
               ("load", "monotonic"): 3},  # the budget, pin_latest's stop flag, the retry's
    "retire": {("store", "release"): 1},  # the spare's count back to 0
    "build_on_base": {("store", "release"): 1},  # the stamp, after the vector
    "try_publish": {("cmpxchg", "seq_cst"): 1,  # the publishing CAS on latest
                    ("atomicrmw", "seq_cst"): 1},  # the base's pin (and latest's reference)
    "push_free": {("load", "seq_cst"): 1, ("cmpxchg", "seq_cst"): 1},
    "pop_free": {("load", "seq_cst"): 2, ("cmpxchg", "seq_cst"): 1},
    "unpin": {("atomicrmw", "seq_cst"): 1},
}


# Counts that are exact, not a lower bound: every such load in the compiled code is one the
# kernel needs (a plain load in place of any of them would leave the others to count).
EXACT_ORDERINGS = {("update", "load", "monotonic")}


@pytest.mark.parametrize("kernel", sorted(LEASHED_ORDERINGS))
def test_leashed_uses_the_memory_orderings_its_argument_needs(kernel):
    from conftest import atomic_orderings
    from numba import njit

    m = Model(threads=2)
    state = m.state._replace(gates=None)  # as in every run: no gates (their parking code has loads)
    args = {"pin_latest": (state, 0, m.control), "retire": (state, 0),
            "push_free": (state, 3), "pop_free": (state, 0), "unpin": (state, 0, 0),
            "build_on_base": (state, 1, 0, m.grad, STEP), "try_publish": (state, 0, 1, 1),
            "update": (state, 0, 0, m.grad, STEP, m.control, m.rule, m.rule_state)}[kernel]
    fresh = njit(nogil=True)(getattr(leashed, kernel).py_func)  # numba hides cached IR
    fresh(*args)
    seen = atomic_orderings(fresh, kernel)
    for (operation, ordering), count in LEASHED_ORDERINGS[kernel].items():
        if (kernel, operation, ordering) in EXACT_ORDERINGS:
            assert seen[operation, ordering] == count, (
                f"{kernel}: {seen[operation, ordering]} {operation} {ordering}, not {count}: {seen}")
        else:
            assert seen[operation, ordering] >= count, (
                f"{kernel}: {seen[operation, ordering]} {operation} {ordering}, needs {count}: "
                f"{seen}")


def test_a_cyclic_free_list_is_reported_not_walked_forever():
    m = Model(threads=1)
    push_free(m.state, 1)
    push_free(m.state, 2)
    m.state.next_free[1] = 2  # corrupt: 2 -> 1 -> 2 -> ...
    with pytest.raises(RuntimeError, match="cycle"):
        leashed.free_slots(m.state)


# -- variants: other hooks on the same kernels ------------------------------------------

BACKOFF_PLUGIN = Path(__file__).parent / "plugins" / "leashed_backoff.py"
BACKED_OFF = 7  # the tests' own gate point, in their hook: the plugin's backoff has run


@pytest.fixture(scope="module")
def back_off():
    """The backoff plugin's hook (tests/plugins/leashed_backoff.py), its strategy registered."""
    from asgdbench.plugins.files import load_plugin_file
    from asgdbench.plugins.strategies import STRATEGIES

    load_plugin_file(BACKOFF_PLUGIN)
    yield sys.modules["asgdbench_plugin_leashed_backoff"].back_off
    STRATEGIES.forget("leashed-backoff")


def _parking_after(hook: Any) -> Any:
    """``hook``, then a gate point of the test's own: a replay sees each time it ran."""

    @njit(nogil=True)
    def after_failed_attempt(state, tid, attempts, control):
        hook(state, tid, attempts, control)
        gate(state.gates, BACKED_OFF, tid)

    return after_failed_attempt


@njit(nogil=True)
def _give_up_at_once(state, attempts):
    return True


def test_the_backoff_variant_runs_its_hook_after_each_lost_cas_and_keeps_the_gates(back_off):
    """A's CAS is lost three times (B publishes while A is parked at BEFORE_PUBLISH, a gate
    of the shared kernels): A parks in the hook after each lost CAS, and only then; its
    fourth attempt wins, built on v3."""
    variant = leashed.variant(name="parking-backoff", summary="test",
                              after_failed_attempt=_parking_after(back_off))
    m = Model(threads=2, update=variant.update)
    A, B = range(2)
    _, token = m.read(A)
    m.board.arm(A, BEFORE_PUBLISH, BACKED_OFF)
    publisher = Actor(lambda: m.update(A, token), "A")
    lost = 3
    for _ in range(lost):
        m.board.wait_parked(A, BEFORE_PUBLISH)
        assert m.step(B)[0] == APPLIED  # B publishes first: A's CAS will be lost
        m.board.release(A)
        m.board.wait_parked(A, BACKED_OFF)  # the hook ran after the lost CAS
        m.board.release(A)
    m.board.wait_parked(A, BEFORE_PUBLISH)
    m.board.disarm(A, BEFORE_PUBLISH)  # BACKED_OFF stays armed: a hook after a win would park
    m.board.release(A)
    assert publisher.result() == (APPLIED, lost, lost + 1, STEP)
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=lost + 1)


def test_the_backoff_variant_publishes_nothing_after_the_stop(back_off):
    """The stop flag set while A's CAS is being lost: the backoff sees it, and A ends with STOP
    instead of retrying (the registered strategy's own update)."""
    from asgdbench.plugins.strategies import get_strategy

    m = Model(threads=2, update=get_strategy("leashed-backoff").update)
    A, B = range(2)
    _, token = m.read(A)
    m.board.arm(A, BEFORE_PUBLISH)
    publisher = Actor(lambda: m.update(A, token), "A")
    m.board.wait_parked(A, BEFORE_PUBLISH)
    assert m.step(B)[0] == APPLIED
    m.control[STOP_FLAG] = 1
    m.board.disarm(A)
    m.board.release(A)
    assert publisher.result() == (STOP, 0, 1, STEP)
    assert m.latest()[0] == 1
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=1)


def test_a_stop_during_the_backoff_ends_the_update_without_a_retry(back_off):
    """The stop flag set while A is in its hook (parked after the backoff): the stop is checked
    after the hook, so A's retry, which would pin the new latest and publish, never happens."""
    variant = leashed.variant(name="parking-backoff", summary="test",
                              after_failed_attempt=_parking_after(back_off))
    m = Model(threads=2, update=variant.update)
    A, B = range(2)
    _, token = m.read(A)
    m.board.arm(A, BEFORE_PUBLISH, BACKED_OFF)
    publisher = Actor(lambda: m.update(A, token), "A")
    m.board.wait_parked(A, BEFORE_PUBLISH)
    assert m.step(B)[0] == APPLIED
    m.board.release(A)
    m.board.wait_parked(A, BACKED_OFF)
    m.control[STOP_FLAG] = 1
    m.board.disarm(A)
    m.board.release(A)
    assert publisher.result() == (STOP, 0, 1, STEP)
    assert m.latest()[0] == 1
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=1)


def test_a_variant_that_gives_up_at_once_drops_after_one_lost_cas_whatever_tp():
    variant = leashed.variant(name="impatient", summary="test", gives_up=_give_up_at_once)
    m = Model(threads=2, tp=float("inf"), update=variant.update)
    A, B = range(2)
    _, token = m.read(A)
    won, lost = m.race_to_publish(A, B, token)
    assert won[0] == APPLIED
    assert lost == (DROPPED, 0, 1, STEP)
    retire(m.state, A)
    retire(m.state, B)
    m.assert_quiescent(applied=1)


# Two variants of one plugin file whose gives_up hooks are lambdas: same module, same name
# (<lambda>), same file. The compile cache must tell them apart (issue of the review).
LAMBDA_HOOKS_PLUGIN = """
from numba import njit
from asgdbench import leashed

drops = leashed.variant(name="drops-at-once", summary="test",
                        gives_up=njit(nogil=True)(lambda state, attempts: attempts >= 1))
never_drops = leashed.variant(name="never-drops", summary="test",
                              gives_up=njit(nogil=True)(lambda state, attempts: False))
"""


@njit(nogil=True)
def _update_through_the_cache(update, rule, state, tid, token, grad, lr, control, rule_state):
    return update(state, tid, token, grad, lr, control, rule, rule_state)


def test_two_lambda_hooks_of_one_plugin_file_compile_to_two_loops(tmp_path, monkeypatch):
    """Each variant's update, compiled through the compile cache (as a run's loop is), gets a
    key of its own and runs its own hook: one drops after a lost CAS, the other retries."""
    import importlib.util

    from asgdbench.engine import loop_cache

    monkeypatch.setenv(loop_cache.ENV_VAR, str(tmp_path / "cache"))
    (tmp_path / "lambda_hooks.py").write_text(LAMBDA_HOOKS_PLUGIN)
    spec = importlib.util.spec_from_file_location("lambda_hooks", tmp_path / "lambda_hooks.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    keys = []
    for variant, expected in ((plugin.drops, (DROPPED, 0, 1, STEP)),
                              (plugin.never_drops, (APPLIED, 1, 2, STEP))):
        m = Model(threads=2, tp=float("inf"))
        kernels = {"update": variant.update, "rule": m.rule}
        args = (m.state, 0, 0, m.grad, STEP, m.control, m.rule_state)
        keys.append(loop_cache.cache_key(_update_through_the_cache, kernels, args))
        loop = loop_cache.specialize(_update_through_the_cache, kernels, args)
        m.update_kernel = lambda state, tid, token, grad, lr, control, rule, rule_state: loop(
            state, tid, token, grad, lr, control, rule_state)
        A, B = range(2)
        _, token = m.read(A)
        won, lost = m.race_to_publish(A, B, token)
        assert won[0] == APPLIED  # A's first CAS will be lost
        assert lost == expected, variant.name
        retire(m.state, A)
        retire(m.state, B)
        m.assert_quiescent(applied=1 + (expected[0] == APPLIED))
    assert None not in keys and keys[0] != keys[1]


def test_the_backoff_variant_is_consistent_with_more_threads_than_cores(back_off):
    from asgdbench.engine.consistency import consistency_stress

    report = consistency_stress("leashed-backoff", 16, 20_000)
    assert report.clean
    assert report.applied == 20_000 and report.final_is_exact


def test_the_default_hooks_compile_into_the_update_leaving_no_call():
    """The built-in update is ``make_update(retry_at_once, beyond_persistence_bound)``: in its
    optimised code the hooks, like the other kernels, are inlined (no call remains), so the
    built-in pays nothing for being composable."""
    import re

    m = Model(threads=2)
    state = m.state._replace(gates=None)  # as in every run
    fresh = njit(nogil=True)(update.py_func)  # numba hides cached IR
    fresh(state, 0, 0, m.grad, STEP, m.control, m.rule, m.rule_state)
    ir = fresh.inspect_llvm(fresh.signatures[0])
    called = set(re.findall(r"call [^@]*@(\S+?)\(", ir))
    for kernel in ("retry_at_once", "beyond_persistence_bound", "try_publish", "build_on_base"):
        assert not [name for name in called if kernel in name], (kernel, sorted(called))


def test_a_variant_registered_outside_the_package_is_not_recorded_as_built_in():
    from asgdbench.plugins.strategies import STRATEGIES, register_strategy, strategy_source

    register_strategy(leashed.variant(name="elsewhere", summary="test"))
    try:
        assert strategy_source("elsewhere") == {"kind": "module", "module": __name__}
        assert strategy_source("leashed")["kind"] == "built-in"
    finally:
        STRATEGIES.forget("elsewhere")
