"""Leashed-SGD's pool of versioned vectors: packed words, the free list, reference counts,
and what the pool says after a run. Kernels take Leashed-SGD's state (``LeashedState``).

``latest`` packs ``version << 16 | slot``; each slot's reference word packs
``version << 16 | count`` (readers, plus one while the slot is ``latest``). Whoever drops a
slot's last reference pushes it onto the free list, a Treiber stack whose head carries an ABA
tag; a thread takes its spare slot from there (:func:`asgdbench.algorithms.leashed.take_spare`).
Why a recycled slot is never pinned by a stale reader is invariant (I) of
:mod:`asgdbench.algorithms.leashed`, which builds the algorithm from these kernels.
"""

from typing import Any

import numpy as np
from numba import njit

from asgdbench.primitives.atomics import cas, fetch_add, load, store
from asgdbench.primitives.gates import gate

SLOT_BITS = 16
SLOT_MASK = (1 << SLOT_BITS) - 1
COUNT_BITS = 16
COUNT_MASK = (1 << COUNT_BITS) - 1
MAX_VERSION = (1 << (63 - SLOT_BITS)) - 1
"""The highest version a vector can carry: both packed words keep 47 bits for it."""
MAX_THREADS = (SLOT_MASK - 1) // 2
"""2m + 1 slots must fit the slot field, and m + 1 references the count field."""
LINE = 8  # int64 cells per cache line: each contended word gets a line
NO_SLOT = -1

# cells of the ``meta`` array the pool keeps
FREE_TOP = 0  # free-list head: tag << 16 | (slot + 1), 0 when empty
SLOTS_USED = 8  # slots ever handed out: the pool's high-water mark


# cells of a thread's line in ``mine``, written only by that thread
SPARE = 0  # the slot this thread builds its next version in, or NO_SLOT
HELD = 1  # the slot its last read pinned

# test-only gate point (see asgdbench.primitives.gates)
POP_LOADED = 4  # free list: head and its successor loaded, CAS not yet tried


@njit(nogil=True, cache=True, inline="always")
def pack(version, low):
    """A ``latest`` word (``low`` = slot) or a reference word (``low`` = count)."""
    return (version << SLOT_BITS) | low


# -- the free list: a Treiber stack whose head carries an ABA tag --------------
# The tag counts pushes and pops (47 bits: it never wraps in practice): a pop's
# CAS succeeds only if no other push or pop happened since it read the head.

@njit(nogil=True, cache=True)
def push_free(state, slot):
    while True:  # lock-free: a failed CAS means another push or pop succeeded
        top = load(state.meta, FREE_TOP, "seq_cst")
        store(state.next_free, slot, (top & SLOT_MASK) - 1, "seq_cst")
        desired = (((top >> SLOT_BITS) + 1) << SLOT_BITS) | (slot + 1)
        if cas(state.meta, FREE_TOP, top, desired) == top:
            return


@njit(nogil=True, cache=True)
def pop_free(state, tid):
    """A slot off the free list, or NO_SLOT when it is empty."""
    while True:  # lock-free: a failed CAS means another push or pop succeeded
        top = load(state.meta, FREE_TOP, "seq_cst")
        head = top & SLOT_MASK
        if head == 0:
            return NO_SLOT
        after = load(state.next_free, head - 1, "seq_cst")
        gate(state.gates, POP_LOADED, tid)
        desired = (((top >> SLOT_BITS) + 1) << SLOT_BITS) | (after + 1)
        if cas(state.meta, FREE_TOP, top, desired) == top:
            return head - 1


# -- reference counting --------------------------------------------------------

@njit(nogil=True, cache=True)
def unpin(state, slot, count):
    """Drop ``count`` references to ``slot``; whoever drops the last one recycles it."""
    before = fetch_add(state.refs, slot * LINE, -count)
    if before & COUNT_MASK == count:
        push_free(state, slot)



# -- after the run (plain Python) ------------------------------------------------

def free_slots(state: Any) -> list[int]:
    """The slots on the free list, top first; call only when no thread runs.

    Raises RuntimeError if the list is longer than the pool (a cycle: corrupt).
    """
    slots, slot = [], (int(state.meta[FREE_TOP]) & SLOT_MASK) - 1
    while slot != NO_SLOT:
        if len(slots) >= state.pool.shape[0]:
            raise RuntimeError("leashed free list is longer than the pool: it has a cycle")
        slots.append(slot)
        slot = int(state.next_free[slot])
    return slots


def latest_slot(state: Any) -> int:
    return int(state.latest[0]) & SLOT_MASK


def latest_version(state: Any) -> int:
    return int(state.latest[0]) >> SLOT_BITS


def final_params(state: Any) -> np.ndarray:
    return state.pool[latest_slot(state)]


def slots_used(state: Any, n_threads: int) -> int:
    """Slots ever handed out: the peak number of live parameter vectors."""
    return int(state.meta[SLOTS_USED])


def live_slots(state: Any, n_threads: int) -> int:
    """Vectors alive now: slots with a reference (latest, pinned) or held as a thread's spare.

    Called while the threads run (the monitor samples it), so the words are
    read racily: a sample, never used for a decision.
    """
    used = min(int(state.meta[SLOTS_USED]), state.pool.shape[0])
    referenced = np.flatnonzero(state.refs[:used * LINE:LINE] & COUNT_MASK)
    # one read of the spare cells: masking the live array would read it twice, and a cell
    # that became NO_SLOT in between would count -1 as a slot (seen: 9 live of 8 ever used)
    spares = state.mine[SPARE::LINE].copy()
    return len(set(referenced.tolist()) | set(spares[spares >= 0].tolist()))


def inspect(state: Any) -> dict:
    """The pool after a run: every slot but the latest should be free again."""
    return {"latest_version": latest_version(state), "free_slots": len(free_slots(state)),
            "slots_used": int(state.meta[SLOTS_USED])}
