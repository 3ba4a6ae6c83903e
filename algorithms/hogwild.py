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

Sparse path, as in the original paper: the gradient reads the shared vector at the
support only, and the apply is a plain load and store per support coordinate, no atomics:
``params[j] <- params[j] - step * g_j`` for j in the support (racy), O(nnz) per update.
The ticket is the same atomic add, for the budget and τ.

``hogwild-per-step-copy`` is the authors' variant: each step copies the shared
vector, without any synchronization, into a vector allocated for that step,
computes the gradient on that (inconsistent) copy and frees it before the
racy apply. Its memory is 1 + the copies alive at the moment.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.atomics import fetch_add, load
from asgdbench.primitives.protocol import APPLIED, MAX_UPDATES, STOP
from asgdbench.primitives.steps import (
    STEP_COPIES_LIVE,
    STEP_COPIES_PEAK,
    copy_into,
    drop_step_copy,
    new_step_copy_counter,
    rule_step,
    sgd_step_inplace,
    sparse_step_inplace,
    take_step_copy,
    vectors_with_step_copies,
)


class HogwildState(NamedTuple):
    params: np.ndarray
    """The shared vector, read and written by every thread without synchronization."""
    tickets: np.ndarray
    """Cell 0: updates numbered so far (a cache line of its own)."""


class HogwildPerStepState(NamedTuple):
    params: np.ndarray
    tickets: np.ndarray
    copies: np.ndarray
    """The per-step copies' live count and peak (``steps.new_step_copy_counter``)."""


def make_state(init_params: np.ndarray, n_threads: int) -> HogwildState:
    return HogwildState(init_params.copy(), np.zeros(8, dtype=np.int64))


@njit(nogil=True, cache=True)
def read(state, tid, control):
    return state.params, load(state.tickets, 0, "monotonic")


@njit(nogil=True)  # not cached: it takes the step rule, a first-class kernel (steps.rule_step)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    return apply_racy(state.params, state.tickets, tid, token, grad, lr, control, rule, rule_state)


@njit(nogil=True, inline="always")
def ticket_and_step(tickets, tid, token, lr, control, rule, rule_state):
    """A ticket for the budget and τ, and the step the rule gives that τ; False past the budget."""
    ticket = fetch_add(tickets, 0, 1)
    if ticket >= control[MAX_UPDATES]:
        return False, 0, lr
    staleness = ticket - token
    return True, staleness, rule_step(rule, rule_state, lr, staleness, tid)


@njit(nogil=True)
def apply_racy(params, tickets, tid, token, grad, lr, control, rule, rule_state):
    """The update of both dense variants: a ticket, then the racy apply of the whole gradient."""
    granted, staleness, step = ticket_and_step(tickets, tid, token, lr, control, rule, rule_state)
    if not granted:
        return STOP, 0, 0, lr
    sgd_step_inplace(params, grad, step)
    return APPLIED, staleness, 1, step


@njit(nogil=True, cache=True)
def read_sparse(state, tid, control, support, n_support):
    return state.params, load(state.tickets, 0, "monotonic")


@njit(nogil=True)  # not cached: it takes the step rule
def update_sparse(state, tid, token, support, values, n_support, lr, control, rule, rule_state):
    """The same ticket, then plain per-coordinate stores on the support only, as in HOGWILD!."""
    granted, staleness, step = ticket_and_step(state.tickets, tid, token, lr, control, rule,
                                               rule_state)
    if not granted:
        return STOP, 0, 0, lr
    sparse_step_inplace(state.params, support, values, n_support, step)  # racy, no atomics
    return APPLIED, staleness, 1, step


def make_state_per_step(init_params: np.ndarray, n_threads: int) -> HogwildPerStepState:
    return HogwildPerStepState(init_params.copy(), np.zeros(8, dtype=np.int64),
                               new_step_copy_counter())


@njit(nogil=True, cache=True)
def read_per_step(state, tid, control):
    token = load(state.tickets, 0, "monotonic")
    local = take_step_copy(state.params, state.copies)
    copy_into(local, state.params)  # racy: others write params meanwhile, so the copy may be torn
    return local, token


@njit(nogil=True)  # not cached: it takes the step rule
def update_per_step(state, tid, token, grad, lr, control, rule, rule_state):
    drop_step_copy(state.copies)  # the gradient is computed: the copy is freed
    return apply_racy(state.params, state.tickets, tid, token, grad, lr, control, rule, rule_state)



register_strategy(Strategy(
    name="hogwild",
    summary="HOGWILD!: no synchronization; reads and component-wise writes race freely.",
    make_state=make_state,
    read=read,
    update=update,
    read_sparse=read_sparse,
    update_sparse=update_sparse,
    doc=__doc__,
))
register_strategy(Strategy(
    name="hogwild-per-step-copy",
    summary="HOGWILD! as the authors ran it: the gradient on an unsynchronized copy made per "
            "step; racy apply.",
    make_state=make_state_per_step,
    read=read_per_step,
    update=update_per_step,
    peak_param_vectors=lambda state, n_threads: vectors_with_step_copies(state.copies,
                                                                   STEP_COPIES_PEAK),
    live_param_vectors=lambda state, n_threads: vectors_with_step_copies(state.copies,
                                                                   STEP_COPIES_LIVE),
    # no sparse path: a per-step copy of the whole vector is O(d), which the sparse path
    # exists to avoid; a sparse workload refuses it
    doc=__doc__,
))
