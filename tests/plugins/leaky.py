"""Broken on purpose (tests/test_check.py): Leashed-SGD that never unpins the vector it read."""

from numba import njit

from asgdbench import Strategy, leashed, register_strategy
from asgdbench.primitives import (
    APPLIED,
    DROPPED,
    MAX_UPDATES,
    STOP,
    cas,
    rule_step,
    sgd_step_into,
    store,
)

LINE, NO_SLOT, NOT_PINNED = leashed.LINE, leashed.NO_SLOT, leashed.NOT_PINNED
SLOT_BITS, SLOT_MASK = leashed.SLOT_BITS, leashed.SLOT_MASK
pack, pin_latest, take_spare, unpin = leashed.pack, leashed.pin_latest, leashed.take_spare, leashed.unpin

NEVER_GIVE_UP, PERSISTENCE, SPARE = leashed.NEVER_GIVE_UP, leashed.PERSISTENCE, leashed.SPARE


@njit(nogil=True)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    pool, latest, refs, next_free, mine, meta, gates = state
    # the bug: no `unpin(state, mine[tid * LINE + HELD], 1)` for the vector the gradient was read from
    spare = take_spare(state, tid, control)
    if spare == NO_SLOT:
        return STOP, 0, 0, lr
    attempts = 0
    while True:
        base = pin_latest(state, tid, control)
        if base == NOT_PINNED:
            return STOP, 0, attempts, lr
        slot, version = base & SLOT_MASK, base >> SLOT_BITS
        if version >= control[MAX_UPDATES]:
            unpin(state, slot, 1)
            return STOP, 0, attempts, lr
        step = rule_step(rule, rule_state, lr, version - token, tid)
        sgd_step_into(pool[spare], pool[slot], grad, step)
        store(refs, spare * LINE, pack(version + 1, 1), "release")
        attempts += 1
        if cas(latest, 0, base, pack(version + 1, spare)) == base:
            mine[tid * LINE + SPARE] = NO_SLOT
            unpin(state, slot, 2)
            return APPLIED, version - token, attempts, step
        unpin(state, slot, 1)
        if meta[PERSISTENCE] != NEVER_GIVE_UP and attempts > meta[PERSISTENCE]:
            return DROPPED, 0, attempts, lr


register_strategy(Strategy(
    name="leaky", summary="broken: leaks every vector it reads", make_state=leashed.make_state,
    read=leashed.read, update=update, retire=leashed.retire, final_params=leashed.final_params,
    peak_param_vectors=leashed.slots_used, consistent=True, uses_cas=True))
