"""Broken on purpose (tests/test_check.py): claims consistency, but updates without the lock."""

import numpy as np
from numba import njit

from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.atomics import fetch_add, mutex_lock, mutex_unlock, new_mutex
from asgdbench.primitives.protocol import APPLIED, MAX_UPDATES, STOP
from asgdbench.primitives.steps import copy_into, rule_step, sgd_step_inplace


def make_state(init_params, n_threads):
    copies = np.empty((n_threads, init_params.size), dtype=init_params.dtype)
    return (init_params.copy(), copies, new_mutex(), np.zeros(8, np.int64))


@njit(nogil=True)
def read(state, tid, control):
    params, copies, mutex, updates = state
    mutex_lock(mutex)
    copy_into(copies[tid], params)
    version = updates[0]
    mutex_unlock(mutex)
    return copies[tid], version


@njit(nogil=True)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    params, copies, mutex, updates = state
    version = fetch_add(updates, 0, 1)
    if version >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    step = rule_step(rule, rule_state, lr, version - token, tid)
    sgd_step_inplace(params, grad, step)  # the bug: no lock around the write
    return APPLIED, version - token, 1, step


register_strategy(Strategy(name="unlocked", summary="broken: the update takes no lock",
                           make_state=make_state, read=read, update=update, consistent=True,
                           peak_param_vectors=lambda state, n_threads: 1 + n_threads))
