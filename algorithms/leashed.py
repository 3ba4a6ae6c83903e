"""Leashed-SGD (Bäckström et al., IPDPS 2021): consistent and lock-free.

The model is a chain of immutable, versioned parameter vectors; one shared word
``latest`` names the newest. Threads never write a published vector.

    loop:
        x <- pin_latest                        (reader-counted, no copy)
        g <- gradient(x, minibatch);  drop_read_pin
        s <- take_spare                        (this thread's, kept across attempts)
        repeat:
            b <- pin_latest
            τ <- version(b) - version(x)       (this attempt's staleness)
            build_on_base: s <- b - step(lr, τ) * g, stamped version(b) + 1
            if try_publish (CAS latest from b to s): return applied
            if gives_up: drop g, keep s        (default: after tp + 1 attempts; tp=inf: never)
            after_failed_attempt               (default: nothing, retry at once)
            if the run is stopping: return     (no retry publishes after the stop)

The steps are public kernels and the two hooks are arguments of :func:`make_update`, so a
variant (:func:`variant`) states only what differs: its hooks. It shares the state, the
read, the pool, the test gates and every invariant below.

The sparse path (a sparse workload, support S): the read pins exactly as above and the
gradient reads ``x[S]`` from the pinned vector, no copy; the update is the same loop, built
by the same factory (:func:`make_update` with ``sparse=True``), with one different step:
``build_on_base`` writes ``s <- b`` and then ``s[S] -= step * values``
(``steps.sparse_step_into``). A publish therefore costs O(d) whatever |S| is: every version is
a whole immutable vector, so the new one must hold the base's d values. That is the
algorithm's design, kept as it is and measured (``written_per_update``: d elements per
applied update on both paths). Variants get the sparse path with their hooks, and every gate
and invariant below holds for it unchanged.

Memory: vectors live in a pool of ``2m + 1`` slots for m threads. A slot is
used for the first time only when the free list is empty, and goes back to it when its
reference count (readers, plus one while it is ``latest``) reaches zero. Each
thread holds at most two slots at once (a pinned vector and its spare), so the
pool never needs more than ``2m + 1``; pages of unused slots are never touched.

Recycling safety. ``latest`` packs ``version << 16 | slot``; each slot's
reference word packs ``version << 16 | count``. A reader pins by one CAS from
``(v, c)`` to ``(v, c + 1)``, only if ``v`` is the version it just read from
``latest`` and ``c > 0``, and keeps the pin only if ``latest`` still names that
vector afterwards (it pins only what ``latest`` names). That check is sound
because of one invariant:

    (I) every version a slot is stamped with exceeds every version it carried before.

Why (I) holds: a publisher takes its spare S *before* it pins its base b, and
b was ``latest`` at a moment after that. Every version S carried before is at
most the version of ``latest`` when S was taken: a published one, because S is
freed only after ``latest`` moved past it; a stamp of a failed attempt, because
the CAS failed only once ``latest`` had moved past its base. ``latest`` only
grows, so ``version(b) + 1`` exceeds them all. Hence a stale word ``(v, S)``
never matches S's reference word once S was recycled (``tests/test_leashed.py``
replays the schedule that broke the earlier pin-then-take order), and a free
slot (count 0) never matches at all.

The step rule is asked once per attempt, with the τ of the base that attempt
builds on: a retry builds on a newer base, so its τ and its step are new.

Versions have 47 bits: the kernels publish no version above
:data:`MAX_VERSION` (about 1.4e14 updates, over a year at 4 M updates/s) and
stop the run there, as on an update budget. Every wait observes the run's stop
flag, so a run can always be stopped.
"""

import dataclasses
import functools
import math
import sys
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from asgdbench.algorithms.leashed_pool import (
    COUNT_BITS,
    COUNT_MASK,
    FREE_TOP,
    HELD,
    LINE,
    MAX_THREADS,
    MAX_VERSION,
    NO_SLOT,
    POP_LOADED,
    SLOT_BITS,
    SLOT_MASK,
    SLOTS_USED,
    SPARE,
    final_params,
    free_slots,
    inspect,
    latest_slot,
    latest_version,
    live_slots,
    pack,
    pop_free,
    push_free,
    slots_used,
    unpin,
)
from asgdbench.errors import PluginError
from asgdbench.plugins.strategies import Param, Strategy, register_strategy, signature_problem
from asgdbench.primitives.atomics import cas, fetch_add, load, store
from asgdbench.primitives.barrier import spin_wait_hint
from asgdbench.primitives.gates import gate
from asgdbench.primitives.protocol import (
    APPLIED,
    DROPPED,
    ERROR,
    MAX_UPDATES,
    NOT_READ,
    STOP,
    STOP_FLAG,
)
from asgdbench.primitives.steps import rule_step, sgd_step_into, sparse_step_into

__all__ = [  # the public kernels and words variants build on (asgdbench.leashed)
    "BEFORE_PUBLISH", "COUNT_BITS", "COUNT_MASK", "FREE_TOP", "HELD", "HOOK_SIGNATURES", "LINE",
    "LEASHED", "LeashedState", "MAX_THREADS", "MAX_VERSION", "NEVER_GIVE_UP", "NOT_PINNED",
    "NO_SLOT", "PERSISTENCE", "PIN_CHECKED", "PIN_LOADED_LATEST", "PIN_PINNED", "POP_LOADED",
    "SLOTS_USED", "SLOT_BITS", "SLOT_MASK", "SPARE", "TAKING_SPARE", "beyond_persistence_bound",
    "build_on_base", "build_sparse_on_base", "drop_read_pin", "final_params", "free_slots",
    "inspect", "latest_slot", "latest_version", "live_slots", "make_state", "make_update", "pack",
    "pin_latest", "pop_free", "push_free", "read", "read_sparse", "retire", "retry_at_once",
    "slots_used", "take_spare", "try_publish", "unpin", "update", "update_sparse", "variant",
    "whole_vector_written",
]

NOT_PINNED = -1
NEVER_GIVE_UP = -1  # tp=inf

# cells of ``meta``
PERSISTENCE = 16  # tp, or NEVER_GIVE_UP


# test-only gate points (see asgdbench.primitives.gates)
PIN_LOADED_LATEST = 1  # pin: latest loaded, its slot not yet pinned
PIN_PINNED = 2  # pin: slot pinned, latest not yet checked again
PIN_CHECKED = 6  # pin: the slot's word checked (live, right version), the pin's CAS not yet tried
BEFORE_PUBLISH = 3  # try_publish: new vector written and stamped, CAS not yet tried
TAKING_SPARE = 5  # take_spare: about to take its spare slot


class LeashedState(NamedTuple):
    """Leashed-SGD's shared state; every kernel reaches its arrays by name (``state.pool``)."""

    pool: np.ndarray
    """The 2m + 1 vector slots, one row each."""
    latest: np.ndarray
    """Cell 0: the newest published vector, ``version << 16 | slot`` (a line of its own)."""
    refs: np.ndarray
    """Per slot, a line apart: ``version << 16 | count`` (readers, plus one while latest)."""
    next_free: np.ndarray
    """Per slot: the next slot on the free list, or NO_SLOT."""
    mine: np.ndarray
    """Per thread, a line apart: its SPARE and HELD slots (written only by that thread)."""
    meta: np.ndarray
    """FREE_TOP, SLOTS_USED and PERSISTENCE, a line apart."""
    gates: Any
    """None in every run (the gate points compile to nothing); a GateBoard's array in tests."""


def make_state(init_params: np.ndarray, n_threads: int, tp: float = math.inf) -> LeashedState:
    if n_threads > MAX_THREADS:
        raise ValueError(f"leashed supports at most {MAX_THREADS} threads")
    capacity = 2 * n_threads + 1
    # np.empty: the operating system commits a slot's pages only when written.
    pool = np.empty((capacity, init_params.shape[0]), dtype=init_params.dtype)
    pool[0] = init_params
    latest = np.zeros(LINE, dtype=np.int64)  # version 0 in slot 0
    refs = np.zeros(capacity * LINE, dtype=np.int64)
    refs[0] = pack(0, 1)  # the reference held by ``latest``
    next_free = np.full(capacity, NO_SLOT, dtype=np.int64)
    mine = np.full(n_threads * LINE, NO_SLOT, dtype=np.int64)
    meta = np.zeros(3 * LINE, dtype=np.int64)
    meta[SLOTS_USED] = 1
    meta[PERSISTENCE] = NEVER_GIVE_UP if tp == math.inf else int(tp)
    return LeashedState(pool, latest, refs, next_free, mine, meta, gates=None)


# -- the composable steps of an update (public: variants build on them) ---------

@njit(nogil=True, cache=True)
def pin_latest(state, tid, control):
    """Pin the vector ``latest`` names; its ``latest`` word, or NOT_PINNED if the run stopped."""
    spins = 0
    while True:
        word = load(state.latest, 0, "acquire")
        gate(state.gates, PIN_LOADED_LATEST, tid)
        slot = word & SLOT_MASK
        ref = load(state.refs, slot * LINE, "acquire")
        if ref >> COUNT_BITS == word >> SLOT_BITS and ref & COUNT_MASK != 0:
            gate(state.gates, PIN_CHECKED, tid)
            if cas(state.refs, slot * LINE, ref, ref + 1) == ref:
                gate(state.gates, PIN_PINNED, tid)
                if load(state.latest, 0, "acquire") == word:
                    return word
                unpin(state, slot, 1)  # latest moved on meanwhile: pin the new one
        if load(control, STOP_FLAG, "monotonic") != 0:
            return NOT_PINNED
        spin_wait_hint(spins)
        spins += 1


@njit(nogil=True, cache=True)
def drop_read_pin(state, tid):
    """Unpin the vector this thread's last read pinned (its gradient is computed)."""
    held = state.mine[tid * LINE + HELD]
    if held != NO_SLOT:  # done computing on the read vector
        state.mine[tid * LINE + HELD] = NO_SLOT
        unpin(state, held, 1)


@njit(nogil=True, cache=True)
def take_spare(state, tid, control):
    """This thread's spare slot: kept from before, off the free list, or new (within 2m+1);
    NO_SLOT (and the run's ERROR cell set) if the pool is exhausted."""
    gate(state.gates, TAKING_SPARE, tid)
    slot = state.mine[tid * LINE + SPARE]
    if slot != NO_SLOT:
        return slot
    slot = pop_free(state, tid)
    if slot == NO_SLOT:
        slot = fetch_add(state.meta, SLOTS_USED, 1)
        if slot >= state.pool.shape[0]:  # would break the 2m+1 bound: fail the run loudly
            fetch_add(state.meta, SLOTS_USED, -1)
            store(control, ERROR, 1, "seq_cst")
            return NO_SLOT
    state.mine[tid * LINE + SPARE] = slot
    return slot


@njit(nogil=True, cache=True)
def build_on_base(state, spare, base, grad, step):
    """``spare <- base - step * grad``, stamped ``version(base) + 1`` (``base``: a ``latest``
    word pinned by :func:`pin_latest`). The stamp is stored with release after the vector, so
    whoever pins the spare once published sees it whole."""
    sgd_step_into(state.pool[spare], state.pool[base & SLOT_MASK], grad, step)
    store(state.refs, spare * LINE, pack((base >> SLOT_BITS) + 1, 1), "release")


@njit(nogil=True, cache=True)
def build_sparse_on_base(state, spare, base, support, values, n_support, step):
    """:func:`build_on_base` on the sparse path: ``spare <- base``, then
    ``spare[support[k]] -= step * values[k]``; O(d) (the copy), stamped and released alike."""
    sparse_step_into(state.pool[spare], state.pool[base & SLOT_MASK], support, values,
                     n_support, step)
    store(state.refs, spare * LINE, pack((base >> SLOT_BITS) + 1, 1), "release")


@njit(nogil=True, cache=True)
def try_publish(state, tid, base, spare):
    """The CAS: publish ``spare`` as ``latest`` if ``latest`` is still ``base``; True if it won.

    Either way the base's pin is dropped (on a win, also the reference ``latest`` held);
    the spare is no longer this thread's on a win, and kept for the next attempt otherwise.
    """
    base_slot = base & SLOT_MASK
    gate(state.gates, BEFORE_PUBLISH, tid)
    if cas(state.latest, 0, base, pack((base >> SLOT_BITS) + 1, spare)) == base:
        state.mine[tid * LINE + SPARE] = NO_SLOT
        unpin(state, base_slot, 2)  # our pin, and the reference of ``latest``
        return True
    unpin(state, base_slot, 1)
    return False


# -- the hooks where variants differ --------------------------------------------

@njit(nogil=True, cache=True)
def retry_at_once(state, tid, attempts, control):
    """Default ``after_failed_attempt``: nothing, the next attempt starts at once."""
    return


@njit(nogil=True, cache=True)
def beyond_persistence_bound(state, attempts):
    """Default ``gives_up``: after tp + 1 attempts (the persistence bound; tp=inf: never)."""
    persistence = state.meta[PERSISTENCE]
    return persistence != NEVER_GIVE_UP and attempts > persistence


def make_update(after_failed_attempt: Any = retry_at_once,
                gives_up: Any = beyond_persistence_bound, sparse: bool = False) -> Any:
    """Leashed-SGD's ``update`` kernel with the given hooks (``@njit(nogil=True)`` kernels), or
    with ``sparse=True`` its ``update_sparse``: the same attempts, gates and hooks, only the
    build step differs (:func:`build_sparse_on_base`):

    - ``after_failed_attempt(state, tid, attempts, control)``: runs after each lost CAS that
      is retried (``attempts`` so far), before the stop flag is checked, so a pause that
      observes the stop flag ends the update with STOP;
    - ``gives_up(state, attempts) -> bool``: after a lost CAS, drop the gradient (DROPPED).

    The hooks are the closure's constants: numba compiles calls of them like any call, so
    the defaults (an empty kernel, one comparison) cost what the code written inline did.
    """

    # not cached: it takes the step rule, a first-class kernel (steps.rule_step); inlined into
    # both paths' kernels, so that each is one function, as the kernel written out would be
    @njit(nogil=True, inline="always")
    def publish(state, tid, token, support, grad, n_support, lr, control, rule, rule_state):
        """Both paths' update: ``support`` None builds ``base - step * grad``, else the sparse
        step of ``grad`` (the support's values) on a copy of the base."""
        drop_read_pin(state, tid)
        limit = min(load(control, MAX_UPDATES, "monotonic"), MAX_VERSION)
        spare = take_spare(state, tid, control)  # before the pin: invariant (I)
        if spare == NO_SLOT:
            return STOP, 0, 0, lr
        attempts = 0
        while True:
            base = pin_latest(state, tid, control)
            if base == NOT_PINNED:
                return STOP, 0, attempts, lr
            base_version = base >> SLOT_BITS
            if base_version >= limit:
                unpin(state, base & SLOT_MASK, 1)
                return STOP, 0, attempts, lr
            staleness = base_version - token  # against this attempt's base
            step = rule_step(rule, rule_state, lr, staleness, tid)
            if support is None:  # a branch on a type: each path compiles to its own build
                build_on_base(state, spare, base, grad, step)
            else:
                build_sparse_on_base(state, spare, base, support, grad, n_support, step)
            attempts += 1
            if try_publish(state, tid, base, spare):
                return APPLIED, staleness, attempts, step
            if gives_up(state, attempts):
                return DROPPED, 0, attempts, lr
            after_failed_attempt(state, tid, attempts, control)
            if load(control, STOP_FLAG, "monotonic") != 0:  # no retry publishes after the stop
                return STOP, 0, attempts, lr

    if sparse:
        @njit(nogil=True)  # not cached: it takes the step rule
        def update_sparse(state, tid, token, support, values, n_support, lr, control, rule,
                          rule_state):
            return publish(state, tid, token, support, values, n_support, lr, control, rule,
                           rule_state)

        return update_sparse

    @njit(nogil=True)  # not cached: it takes the step rule
    def update(state, tid, token, grad, lr, control, rule, rule_state):
        return publish(state, tid, token, None, grad, 0, lr, control, rule, rule_state)

    return update


# -- the strategy's kernels ------------------------------------------------------

@njit(nogil=True, cache=True)
def read(state, tid, control):
    word = pin_latest(state, tid, control)
    if word == NOT_PINNED:
        return state.pool[0], NOT_READ
    state.mine[tid * LINE + HELD] = word & SLOT_MASK
    return state.pool[word & SLOT_MASK], word >> SLOT_BITS


@njit(nogil=True, cache=True)
def read_sparse(state, tid, control, support, n_support):
    """The sparse path's read is the read: pin, no copy (the gradient reads the support)."""
    return read(state, tid, control)


update = make_update()
update_sparse = make_update(sparse=True)


@njit(nogil=True, cache=True)
def retire(state, tid):
    """Return this thread's unpublished spare vector to the free list, count 0 like every free slot."""
    slot = state.mine[tid * LINE + SPARE]
    if slot != NO_SLOT:
        state.mine[tid * LINE + SPARE] = NO_SLOT
        stamp = load(state.refs, slot * LINE, "monotonic")
        store(state.refs, slot * LINE, stamp & ~COUNT_MASK, "release")
        push_free(state, slot)


# -- after the run (plain Python) ------------------------------------------------

def whole_vector_written(n_params: int, n_support: int) -> int:
    """Elements one applied update writes: a whole new version, on both paths."""
    return n_params


LEASHED = register_strategy(Strategy(
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
    read_sparse=read_sparse,
    update_sparse=update_sparse,
    written_per_update=whole_vector_written,
    retire=retire,
    final_params=final_params,
    peak_param_vectors=slots_used,
    live_param_vectors=live_slots,
    inspect=inspect,
    uses_cas=True,
    consistent=True,
    max_threads=MAX_THREADS,
    max_updates=MAX_VERSION,
    doc=__doc__,
))


HOOK_SIGNATURES = {"after_failed_attempt": ("state", "tid", "attempts", "control"),
                   "gives_up": ("state", "attempts")}
"""The hooks' parameters, by name (checked when a variant is made, as kernels are)."""


def variant(name: str, summary: str, *, after_failed_attempt: Any = retry_at_once,
            gives_up: Any = beyond_persistence_bound, doc: str = "") -> Strategy:
    """Leashed-SGD with other hooks (see :func:`make_update`), everything else shared: its
    state (``tp`` included), its read, retire, pool accounting, test gates and sparse path
    (the same hooks in ``update_sparse``). Register it
    with :func:`asgdbench.register_strategy`::

        register_strategy(leashed.variant(name="leashed-backoff", summary="...",
                                          after_failed_attempt=back_off))
    """
    for hook, function in (("after_failed_attempt", after_failed_attempt),
                           ("gives_up", gives_up)):
        problem = signature_problem(hook, function, HOOK_SIGNATURES[hook])
        if problem:
            raise PluginError(f"strategy {name!r}: {problem}")
    # the registry tells a built-in by the module of make_state: name the caller's module, so
    # that a variant made elsewhere is not recorded as built-in (runs.jsonl's strategy_source)
    caller = sys._getframe(1).f_globals.get("__name__", "")

    @functools.wraps(make_state)
    def make_variant_state(*args: Any, **kwargs: Any) -> LeashedState:
        return make_state(*args, **kwargs)

    make_variant_state.__module__ = caller
    return dataclasses.replace(LEASHED, name=name, summary=summary, doc=doc or summary,
                               make_state=make_variant_state,
                               update=make_update(after_failed_attempt, gives_up),
                               update_sparse=make_update(after_failed_attempt, gives_up,
                                                         sparse=True))
