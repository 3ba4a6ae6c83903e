"""HOGWILD! (Niu et al., 2011): no synchronization at all.

Threads compute on the shared vector while others write it, and apply their
update component by component with plain (non-atomic) read-modify-writes, so
reads can be inconsistent and concurrent writes to a component can be lost.

    loop:
        x  <- params                      (shared, read while others write)
        g  <- gradient(x, minibatch)
        for i: params[i] <- params[i] - lr * g[i]     (racy)

An atomic ticket counter only numbers the updates, for the update budget and
for staleness; it orders nothing.
"""

import numpy as np
from numba import njit

from asgdbench.engine.atomics import fetch_add, load
from asgdbench.engine.protocol import APPLIED, MAX_UPDATES, STOP
from asgdbench.engine.steps import sgd_step_inplace
from asgdbench.plugins.strategies import Strategy, register_strategy


def make_state(init_params: np.ndarray, n_threads: int) -> tuple:
    tickets = np.zeros(8, dtype=np.int64)  # one cache line of its own
    return (init_params.copy(), tickets)


@njit(nogil=True, cache=True)
def read(state, tid, control):
    params, tickets = state
    return params, load(tickets, 0, "monotonic")


@njit(nogil=True, cache=True)
def update(state, tid, token, grad, lr, control):
    params, tickets = state
    ticket = fetch_add(tickets, 0, 1)
    if ticket >= control[MAX_UPDATES]:
        return STOP, 0, 0
    sgd_step_inplace(params, grad, lr)
    return APPLIED, ticket - token, 1


register_strategy(Strategy(
    name="hogwild",
    summary="HOGWILD!: no synchronization; reads and component-wise writes race freely.",
    make_state=make_state,
    read=read,
    update=update,
    doc=__doc__,
))
