"""Leashed-SGD (Bäckström et al., IPDPS 2021): consistent and lock-free.

The model is a chain of immutable, versioned parameter vectors; one shared word
``latest`` names the newest. Threads never write a published vector.

    loop:
        x <- pin(latest)                       (reader-counted, no copy)
        g <- gradient(x, minibatch);  unpin(x)
        repeat at most tp + 1 times:           (persistence bound; tp=inf: forever)
            b <- pin(latest)
            new <- b - lr * g                  (into this thread's own spare vector)
            if CAS(latest, b, new): unpin(b) twice; return applied
            unpin(b)                           (lost the race: retry on the new latest)
        drop g, keep the spare vector for next time

Memory: vectors live in a pool of ``2m + 1`` slots for m threads. A slot is
handed out only when the free list is empty, and goes back to it when its
reference count (readers, plus one while it is ``latest``) reaches zero. Each
thread holds at most two slots at once (a pinned vector and its spare), so the
pool never needs more than ``2m + 1``; pages of unused slots are never touched.

Recycling safety: ``latest`` packs ``version << 16 | slot`` and each slot's
reference word packs ``version << 24 | count``. A reader pins a slot only by a
CAS that checks that the slot still carries the version it read from
``latest`` and a non-zero count, so it can never pin a slot that was recycled
and is being rewritten; versions only grow, so a stale word never matches.
"""

import math

import numpy as np
from numba import njit

from asgdbench.atomics import cas, fetch_add, load, store
from asgdbench.barrier import spin_wait_hint
from asgdbench.protocol import APPLIED, DROPPED, ERROR, MAX_UPDATES, STOP
from asgdbench.registry import Param, Strategy, register_strategy
from asgdbench.steps import sgd_step_into

SLOT_BITS = 16
SLOT_MASK = (1 << SLOT_BITS) - 1
COUNT_BITS = 24
COUNT_MASK = (1 << COUNT_BITS) - 1
LINE = 8  # int64 cells per cache line: each contended word gets a line
NO_SLOT = -1
NEVER_GIVE_UP = -1  # tp=inf

# cells of the ``meta`` array
FREE_TOP = 0  # free-list head: tag << 32 | (slot + 1), 0 when empty
SLOTS_USED = 8  # slots ever handed out: the pool's high-water mark
PERSISTENCE = 16  # tp, or NEVER_GIVE_UP


def make_state(init_params: np.ndarray, n_threads: int, tp: float = math.inf) -> tuple:
    capacity = 2 * n_threads + 1
    if capacity > SLOT_MASK:
        raise ValueError(f"leashed supports at most {SLOT_MASK // 2 - 1} threads")
    # np.empty: the operating system commits a slot's pages only when written.
    pool = np.empty((capacity, init_params.shape[0]), dtype=init_params.dtype)
    pool[0] = init_params
    latest = np.zeros(LINE, dtype=np.int64)  # version 0 in slot 0
    refs = np.zeros(capacity * LINE, dtype=np.int64)
    refs[0] = 1  # version 0, count 1: the reference held by ``latest``
    next_free = np.full(capacity, NO_SLOT, dtype=np.int64)
    spare = np.full(n_threads * LINE, NO_SLOT, dtype=np.int64)
    meta = np.zeros(3 * LINE, dtype=np.int64)
    meta[SLOTS_USED] = 1
    meta[PERSISTENCE] = NEVER_GIVE_UP if tp == math.inf else int(tp)
    return (pool, latest, refs, next_free, spare, meta)


# -- the free list: a Treiber stack whose head carries an ABA tag --------------

@njit(nogil=True, cache=True)
def _push_free(meta, next_free, slot):
    while True:
        top = load(meta, FREE_TOP, "seq_cst")
        store(next_free, slot, (top & 0xFFFFFFFF) - 1, "seq_cst")
        desired = (((top >> 32) + 1) << 32) | (slot + 1)
        if cas(meta, FREE_TOP, top, desired) == top:
            return


@njit(nogil=True, cache=True)
def _pop_free(meta, next_free):
    while True:
        top = load(meta, FREE_TOP, "seq_cst")
        head = top & 0xFFFFFFFF
        if head == 0:
            return NO_SLOT
        after = load(next_free, head - 1, "seq_cst")
        desired = (((top >> 32) + 1) << 32) | (after + 1)
        if cas(meta, FREE_TOP, top, desired) == top:
            return head - 1


@njit(nogil=True, cache=True)
def _take_slot(pool, meta, next_free, control):
    """A free slot; grows the pool only when none is free."""
    slot = _pop_free(meta, next_free)
    if slot == NO_SLOT:
        slot = fetch_add(meta, SLOTS_USED, 1)
        if slot >= pool.shape[0]:  # would break the 2m+1 bound: fail the run loudly
            fetch_add(meta, SLOTS_USED, -1)
            store(control, ERROR, 1, "seq_cst")
            return NO_SLOT
    return slot


# -- reference counting --------------------------------------------------------

@njit(nogil=True, cache=True)
def pin_latest(latest, refs):
    """Pin the current latest vector for reading; returns its ``latest`` word."""
    spins = 0
    while True:
        word = load(latest, 0, "acquire")
        slot = word & SLOT_MASK
        ref = load(refs, slot * LINE, "acquire")
        if ref >> COUNT_BITS == word >> SLOT_BITS and ref & COUNT_MASK != 0:
            if cas(refs, slot * LINE, ref, ref + 1) == ref:
                return word
        spin_wait_hint(spins)  # latest moved on, or a concurrent pin won: retry
        spins += 1


@njit(nogil=True, cache=True)
def _unpin(state, slot, count):
    """Drop ``count`` references to ``slot``; the last one recycles it."""
    pool, latest, refs, next_free, spare, meta = state
    before = fetch_add(refs, slot * LINE, -count)
    if before & COUNT_MASK == count:
        _push_free(meta, next_free, slot)


# -- the strategy's kernels ------------------------------------------------------

@njit(nogil=True, cache=True)
def read(state, tid):
    pool, latest, refs, next_free, spare, meta = state
    word = pin_latest(latest, refs)
    return pool[word & SLOT_MASK], word


@njit(nogil=True, cache=True)
def update(state, tid, token, grad, lr, control):
    pool, latest, refs, next_free, spare, meta = state
    _unpin(state, token & SLOT_MASK, 1)  # done computing on the read vector
    read_version = token >> SLOT_BITS
    persistence = meta[PERSISTENCE]
    new_slot = spare[tid * LINE]
    attempts = 0
    while True:
        base = pin_latest(latest, refs)
        base_slot = base & SLOT_MASK
        base_version = base >> SLOT_BITS
        if base_version >= control[MAX_UPDATES]:
            _unpin(state, base_slot, 1)
            spare[tid * LINE] = new_slot
            return STOP, 0, attempts
        if new_slot == NO_SLOT:
            new_slot = _take_slot(pool, meta, next_free, control)
            if new_slot == NO_SLOT:
                _unpin(state, base_slot, 1)
                return STOP, 0, attempts
        sgd_step_into(pool[new_slot], pool[base_slot], grad, lr)
        new_version = base_version + 1
        store(refs, new_slot * LINE, (new_version << COUNT_BITS) | 1, "release")
        attempts += 1
        if cas(latest, 0, base, (new_version << SLOT_BITS) | new_slot) == base:
            spare[tid * LINE] = NO_SLOT
            _unpin(state, base_slot, 2)  # our pin, and the reference of ``latest``
            return APPLIED, base_version - read_version, attempts
        _unpin(state, base_slot, 1)
        if persistence != NEVER_GIVE_UP and attempts > persistence:
            spare[tid * LINE] = new_slot
            return DROPPED, 0, attempts


@njit(nogil=True, cache=True)
def retire(state, tid):
    """Return this thread's unpublished spare vector to the free list."""
    pool, latest, refs, next_free, spare, meta = state
    slot = spare[tid * LINE]
    if slot != NO_SLOT:
        spare[tid * LINE] = NO_SLOT
        _push_free(meta, next_free, slot)


def free_slots(state: tuple) -> int:
    """How many slots are on the free list (call only when no thread runs)."""
    pool, latest, refs, next_free, spare, meta = state
    count, slot = 0, (int(meta[FREE_TOP]) & 0xFFFFFFFF) - 1
    while slot != NO_SLOT:
        count, slot = count + 1, int(next_free[slot])
    return count


def latest_version(state: tuple) -> int:
    return int(state[1][0]) >> SLOT_BITS


def inspect(state: tuple) -> dict:
    """The pool after a run: every slot but the latest should be free again."""
    return {"latest_version": latest_version(state), "free_slots": free_slots(state),
            "slots_used": int(state[5][SLOTS_USED])}


register_strategy(Strategy(
    name="leashed",
    summary="Leashed-SGD: lock-free, consistent; versioned vectors published by CAS.",
    params=(
        Param("tp", "int_or_inf", math.inf,
              "persistence bound: failed-CAS retries before a gradient is dropped (inf: never)",
              minimum=0),
    ),
    make_state=make_state,
    read=read,
    update=update,
    retire=retire,
    final_params=lambda state: state[0][int(state[1][0]) & SLOT_MASK],
    peak_param_vectors=lambda state, n_threads: int(state[5][SLOTS_USED]),
    inspect=inspect,
    uses_cas=True,
    doc=__doc__,
))
