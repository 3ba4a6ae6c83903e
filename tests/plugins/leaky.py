"""Broken on purpose (tests/test_check.py): Leashed-SGD that never unpins the vector it read."""

from numba import njit

from asgdbench import Strategy, leashed, register_strategy
from asgdbench.primitives import APPLIED, DROPPED, MAX_UPDATES, STOP, STOP_FLAG, load, rule_step

SLOT_BITS, SLOT_MASK = leashed.SLOT_BITS, leashed.SLOT_MASK


@njit(nogil=True)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    # the bug: no `leashed.drop_read_pin(state, tid)` for the vector the gradient was read from
    spare = leashed.take_spare(state, tid, control)
    if spare == leashed.NO_SLOT:
        return STOP, 0, 0, lr
    attempts = 0
    while True:
        base = leashed.pin_latest(state, tid, control)
        if base == leashed.NOT_PINNED:
            return STOP, 0, attempts, lr
        if base >> SLOT_BITS >= control[MAX_UPDATES]:
            leashed.unpin(state, base & SLOT_MASK, 1)
            return STOP, 0, attempts, lr
        staleness = (base >> SLOT_BITS) - token
        step = rule_step(rule, rule_state, lr, staleness, tid)
        leashed.build_on_base(state, spare, base, grad, step)
        attempts += 1
        if leashed.try_publish(state, tid, base, spare):
            return APPLIED, staleness, attempts, step
        if leashed.beyond_persistence_bound(state, attempts):
            return DROPPED, 0, attempts, lr
        if load(control, STOP_FLAG, "monotonic") != 0:
            return STOP, 0, attempts, lr


register_strategy(Strategy(
    name="leaky", summary="broken: leaks every vector it reads", make_state=leashed.make_state,
    read=leashed.read, update=update, retire=leashed.retire, final_params=leashed.final_params,
    peak_param_vectors=leashed.slots_used, consistent=True, uses_cas=True))
