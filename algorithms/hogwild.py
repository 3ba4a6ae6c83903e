"""HOGWILD! (Niu et al., 2011): no synchronization at all.

Threads compute on the shared vector while others write it, and apply their
update component by component with plain (non-atomic) read-modify-writes, so
reads can be inconsistent and concurrent writes to a component can be lost.

    loop:
        x  <- params                      (shared, read while others write)
        g  <- gradient(x, minibatch)
        τ  <- tickets taken since x was read
        for i: params[i] <- params[i] - step(lr, τ) * g[i]     (racy)

An atomic ticket counter only numbers the updates, for the update budget and
for staleness; it orders nothing. Its τ, for the step rule and the staleness
telemetry, is approximate: the counter is read when the read starts and
ticked when the apply starts, while the vector itself is written component
by component by overlapping applies, so the vector a gradient saw is not
exactly "version token" and the updates between read and apply are not
exactly τ.
"""

import numpy as np
from numba import njit

from asgdbench.engine.atomics import fetch_add, load
from asgdbench.engine.protocol import APPLIED, MAX_UPDATES, STOP
from asgdbench.engine.steps import rule_step, sgd_step_inplace
from asgdbench.plugins.strategies import Strategy, register_strategy


def make_state(init_params: np.ndarray, n_threads: int) -> tuple:
    tickets = np.zeros(8, dtype=np.int64)  # one cache line of its own
    return (init_params.copy(), tickets)


@njit(nogil=True, cache=True)
def read(state, tid, control):
    params, tickets = state
    return params, load(tickets, 0, "monotonic")


@njit(nogil=True)  # not cached: it takes the step rule, a first-class kernel (steps.rule_step)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    params, tickets = state
    ticket = fetch_add(tickets, 0, 1)
    if ticket >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    staleness = ticket - token
    step = rule_step(rule, rule_state, lr, staleness, tid)
    sgd_step_inplace(params, grad, step)
    return APPLIED, staleness, 1, step


register_strategy(Strategy(
    name="hogwild",
    summary="HOGWILD!: no synchronization; reads and component-wise writes race freely.",
    make_state=make_state,
    read=read,
    update=update,
    doc=__doc__,
))
