"""SYNC: synchronous parallel SGD, a round at a time behind barriers.

All m threads compute a gradient on the same parameters, then every thread
applies the average of the m gradients to its own slice of the vector:

    loop:
        x  <- params                      (all threads see the same version)
        g_t <- gradient(x, minibatch_t);  publish g_t
        barrier
        params[my slice] <- params[my slice] - step(lr, τ=0) * mean_t(g_t)[my slice]
        barrier

One round is one update (an effective minibatch m times larger), counted by
thread 0; the other threads' gradients are MERGED into it. A thread that sees
the run stopping withdraws from the first barrier, so nobody waits forever.

τ is always 0: every gradient of a round was computed on the vector the round
updates. So the step rule is a constant, its value at τ = 0. Every thread asks
the rule once per round (so per-thread rule state, such as a warm-up count,
advances alike on every thread), but only thread 0's answer, published before
the first barrier, is the round's step: all slices take the same one.
"""

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.barrier import barrier_wait
from asgdbench.primitives.protocol import APPLIED, MAX_UPDATES, MERGED, NEVER, STOP, STOP_FLAG
from asgdbench.primitives.steps import copy_into, in_type_of, rule_step

GRADIENTS_IN = 0  # barrier cell: every gradient of the round is published
UPDATED = 8  # barrier cell: every slice of the round is applied


class SyncState(NamedTuple):
    params: np.ndarray
    grads: np.ndarray
    """One row per thread: its gradient of the round."""
    barriers: np.ndarray
    """The two barriers' cells (GRADIENTS_IN, UPDATED)."""
    rounds: np.ndarray
    """Cell 0: rounds applied, written by thread 0 between the barriers."""
    inv_threads: np.ndarray
    """Cell 0: 1 / m in the vector's dtype."""
    gates: Any
    """None in every run; a GateBoard's array in tests."""
    round_step: np.ndarray
    """Cell 0: thread 0's rule answer, published before the first barrier."""


def make_state(init_params: np.ndarray, n_threads: int) -> SyncState:
    return SyncState(
        params=init_params.copy(),
        grads=np.zeros((n_threads, init_params.shape[0]), dtype=init_params.dtype),
        barriers=np.zeros(16, dtype=np.int64),
        rounds=np.zeros(1, dtype=np.int64),
        inv_threads=np.array([1.0 / n_threads], dtype=init_params.dtype),
        gates=None,
        round_step=np.zeros(1, dtype=np.float64))


@njit(nogil=True, cache=True)
def read(state, tid, control):
    return state.params, state.rounds[0]


@njit(nogil=True)  # not cached: it takes the step rule, a first-class kernel (steps.rule_step)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    params, grads, barriers, rounds = state.params, state.grads, state.barriers, state.rounds
    n_threads = grads.shape[0]
    if rounds[0] >= control[MAX_UPDATES]:  # every thread decides alike: rounds is stable here
        return STOP, 0, 0, lr
    copy_into(grads[tid], grad)
    mine = rule_step(rule, rule_state, lr, 0, tid)
    if tid == 0:
        state.round_step[0] = mine  # read by all after the barrier, which orders it
    if not barrier_wait(barriers, GRADIENTS_IN, n_threads, control, STOP_FLAG, state.gates, tid):
        return STOP, 0, 0, lr
    n = params.shape[0]
    lo = tid * n // n_threads
    hi = (tid + 1) * n // n_threads
    applied_step = in_type_of(state.round_step[0], lr)
    step = applied_step * state.inv_threads[0]
    for t in range(n_threads):
        for i in range(lo, hi):
            params[i] -= step * grads[t, i]
    if tid == 0:
        rounds[0] += 1
    barrier_wait(barriers, UPDATED, n_threads, control, NEVER, state.gates, tid)
    return (APPLIED if tid == 0 else MERGED), 0, 1, applied_step


register_strategy(Strategy(
    name="sync",
    summary="Synchronous parallel SGD: average m gradients per round, behind barriers.",
    make_state=make_state,
    read=read,
    update=update,
    peak_param_vectors=lambda state, n_threads: 1 + n_threads,  # the vector and m gradients
    consistent=True,
    doc=__doc__,
))
