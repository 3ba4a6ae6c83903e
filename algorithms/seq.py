"""SEQ: one thread running plain SGD, the reference every parallel run is compared with.

    loop:
        x  <- params                      (no copy: nobody else writes)
        g  <- gradient(x, minibatch)
        params <- params - step(lr, τ=0) * g

τ is always 0 (nothing is published between the read and the apply), so the
step rule is a constant: its value at τ = 0.

Sparse path: the gradient reads the vector itself at the support, and the apply writes
only the support, ``params[j] -= step * g_j`` for j in the support: O(nnz) per update.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.protocol import APPLIED, MAX_UPDATES, STOP
from asgdbench.primitives.steps import rule_step, sgd_step_inplace, sparse_step_inplace


class SeqState(NamedTuple):
    params: np.ndarray
    """The parameter vector, written in place."""
    updates: np.ndarray
    """Cell 0: updates applied so far (the version a read returns)."""


def make_state(init_params: np.ndarray, n_threads: int) -> SeqState:
    return SeqState(init_params.copy(), np.zeros(1, dtype=np.int64))


@njit(nogil=True, cache=True)
def read(state, tid, control):
    return state.params, state.updates[0]


@njit(nogil=True)  # not cached: it takes the step rule, a first-class kernel (steps.rule_step)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    if state.updates[0] >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    step = rule_step(rule, rule_state, lr, 0, tid)
    sgd_step_inplace(state.params, grad, step)
    state.updates[0] += 1
    return APPLIED, 0, 1, step


@njit(nogil=True, cache=True)
def read_sparse(state, tid, control, support, n_support):
    return state.params, state.updates[0]


@njit(nogil=True)  # not cached: it takes the step rule
def update_sparse(state, tid, token, support, values, n_support, lr, control, rule, rule_state):
    if state.updates[0] >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    step = rule_step(rule, rule_state, lr, 0, tid)
    sparse_step_inplace(state.params, support, values, n_support, step)
    state.updates[0] += 1
    return APPLIED, 0, 1, step


register_strategy(Strategy(
    name="seq",
    summary="One thread, plain SGD: the sequential reference.",
    make_state=make_state,
    read=read,
    update=update,
    read_sparse=read_sparse,
    update_sparse=update_sparse,
    consistent=True,
    max_threads=1,
    doc=__doc__,
))
