"""Broken on purpose (tests/test_check.py): HOGWILD! that never looks at the update budget."""

import numpy as np
from numba import njit

from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.atomics import fetch_add, load
from asgdbench.primitives.protocol import APPLIED
from asgdbench.primitives.steps import rule_step, sgd_step_inplace


def make_state(init_params, n_threads):
    return (init_params.copy(), np.zeros(8, np.int64))


@njit(nogil=True)
def read(state, tid, control):
    return state[0], load(state[1], 0, "monotonic")


@njit(nogil=True)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    ticket = fetch_add(state[1], 0, 1)  # no `if ticket >= control[MAX_UPDATES]: return STOP`
    step = rule_step(rule, rule_state, lr, ticket - token, tid)
    sgd_step_inplace(state[0], grad, step)
    return APPLIED, ticket - token, 1, step


register_strategy(Strategy(name="no-budget", summary="broken: ignores the update budget",
                           make_state=make_state, read=read, update=update))
