"""Lock-based AsyncSGD: a blocking OS mutex makes every read and update consistent.

    loop:
        lock;  x_local <- params;  unlock          (consistent copy)
        g <- gradient(x_local, minibatch)
        lock;  params <- params - lr * g;  unlock

The mutex is a pthread mutex, as the paper's ``std::mutex``: a waiting thread
sleeps in the kernel, so a preempted lock holder stalls everyone behind it. A
lock or unlock that fails (an errno) fails the run through the ERROR cell.
"""

import numpy as np
from numba import njit

from asgdbench.engine.atomics import mutex_lock, mutex_unlock, new_mutex, store
from asgdbench.engine.protocol import APPLIED, ERROR, MAX_UPDATES, NOT_READ, STOP
from asgdbench.engine.steps import copy_into, sgd_step_inplace
from asgdbench.plugins.strategies import Strategy, register_strategy


def make_state(init_params: np.ndarray, n_threads: int) -> tuple:
    local_copies = np.empty((n_threads, init_params.shape[0]), dtype=init_params.dtype)
    updates = np.zeros(1, dtype=np.int64)  # only touched under the mutex
    return (init_params.copy(), local_copies, new_mutex(), updates)


@njit(nogil=True, cache=True)
def read(state, tid, control):
    params, local_copies, mutex, updates = state
    if mutex_lock(mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
        return local_copies[tid], NOT_READ
    copy_into(local_copies[tid], params)
    version = updates[0]
    if mutex_unlock(mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
    return local_copies[tid], version


@njit(nogil=True, cache=True)
def update(state, tid, token, grad, lr, control):
    params, local_copies, mutex, updates = state
    if mutex_lock(mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
        return STOP, 0, 0
    outcome, staleness = STOP, 0
    if updates[0] < control[MAX_UPDATES]:
        sgd_step_inplace(params, grad, lr)
        staleness = updates[0] - token
        updates[0] += 1
        outcome = APPLIED
    if mutex_unlock(mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
    return outcome, staleness, 1 if outcome == APPLIED else 0


register_strategy(Strategy(
    name="lock",
    summary="Lock-based AsyncSGD: a mutex guards the copy-out read and the update.",
    make_state=make_state,
    read=read,
    update=update,
    peak_param_vectors=lambda state, n_threads: 1 + n_threads,
    consistent=True,
    doc=__doc__,
))
