"""Lock-based AsyncSGD: a blocking OS mutex makes every read and update consistent.

    loop:
        lock;  x_local <- params;  unlock          (consistent copy)
        g <- gradient(x_local, minibatch)
        lock;  τ <- updates since the read;  params <- params - step(lr, τ) * g;  unlock

τ is exact: both the read and the update count updates under the mutex.

The sparse path (a sparse workload) is the same loop on the minibatch's support S: the read
copies only ``params[S]`` into ``x_local`` under the mutex (its other coordinates are stale,
and the gradient never reads them), and the update applies ``params[S] -= step * values``
under the mutex. Both cost O(|S|), τ is exact as above, and one applied update writes |S|
elements of the shared vector.

The mutex is a pthread mutex, as the paper's ``std::mutex``: a waiting thread
sleeps in the kernel, so a preempted lock holder stalls everyone behind it. A
lock or unlock that fails (an errno) fails the run through the ERROR cell.

``lock-per-step-copy`` is the authors' variant: ``x_local`` is allocated for
each step and freed once the gradient is computed, before the update takes the
lock, so a thread holds a copy only while it reads and computes. Its memory is
1 + the copies alive at the moment (at most 1 + m), not 1 + m always.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.atomics import mutex_lock, mutex_unlock, new_mutex, store
from asgdbench.primitives.protocol import APPLIED, ERROR, MAX_UPDATES, NOT_READ, STOP
from asgdbench.primitives.steps import (
    STEP_COPIES_LIVE,
    STEP_COPIES_PEAK,
    copy_into,
    drop_step_copy,
    new_step_copy_counter,
    rule_step,
    sgd_step_inplace,
    sparse_copy_into,
    sparse_step_inplace,
    take_step_copy,
    vectors_with_step_copies,
)


class LockState(NamedTuple):
    params: np.ndarray
    """The shared vector, read and written only under the mutex."""
    local_copies: np.ndarray
    """One row per thread: its consistent copy of the vector."""
    mutex: np.ndarray
    """The pthread mutex (``atomics.new_mutex``)."""
    updates: np.ndarray
    """Cell 0: updates applied so far, only touched under the mutex."""


class LockPerStepState(NamedTuple):
    params: np.ndarray
    copies: np.ndarray
    """The per-step copies' live count and peak (``steps.new_step_copy_counter``)."""
    mutex: np.ndarray
    updates: np.ndarray


def make_state(init_params: np.ndarray, n_threads: int) -> LockState:
    local_copies = np.empty((n_threads, init_params.shape[0]), dtype=init_params.dtype)
    return LockState(init_params.copy(), local_copies, new_mutex(), np.zeros(1, dtype=np.int64))


@njit(nogil=True, cache=True, inline="always")
def copy_read(local, params, support, n_support):
    """The read's copy: the whole vector (``support`` None, the dense path) or its support.
    The branch is on a type, so each path compiles to its own copy only."""
    if support is None:
        copy_into(local, params)
    else:
        sparse_copy_into(local, params, support, n_support)


@njit(nogil=True, cache=True, inline="always")
def apply_step(params, grad, support, n_support, step):
    """The update's step: the whole gradient (``support`` None) or ``grad`` on the support."""
    if support is None:
        sgd_step_inplace(params, grad, step)
    else:
        sparse_step_inplace(params, support, grad, n_support, step)


@njit(nogil=True, cache=True)
def read(state, tid, control):
    return read_locked(state, tid, control, None, 0)


@njit(nogil=True, cache=True)
def read_sparse(state, tid, control, support, n_support):
    return read_locked(state, tid, control, support, n_support)


@njit(nogil=True, cache=True)
def copy_under_lock(local, state, control, support, n_support):
    """The read of both variants and both paths: ``local`` filled from the vector under the
    mutex; the version it is, or NOT_READ (the run's ERROR cell set) if the mutex failed."""
    if mutex_lock(state.mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
        return NOT_READ
    copy_read(local, state.params, support, n_support)
    version = state.updates[0]
    if mutex_unlock(state.mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
    return version


@njit(nogil=True, cache=True)
def read_locked(state, tid, control, support, n_support):
    """The read of both paths: the thread's own copy, filled under the mutex."""
    local = state.local_copies[tid]
    return local, copy_under_lock(local, state, control, support, n_support)


@njit(nogil=True)  # not cached: it takes the step rule, a first-class kernel (steps.rule_step)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    return apply_locked(state.params, state.mutex, state.updates, tid, token, grad, None, 0, lr,
                        control, rule, rule_state)


@njit(nogil=True)  # not cached: it takes the step rule
def update_sparse(state, tid, token, support, values, n_support, lr, control, rule, rule_state):
    return apply_locked(state.params, state.mutex, state.updates, tid, token, values, support,
                        n_support, lr, control, rule, rule_state)


@njit(nogil=True)
def apply_locked(params, mutex, updates, tid, token, grad, support, n_support, lr, control, rule,
                 rule_state):
    """The update of both variants and both paths: under the mutex, τ and the step, within
    the budget (``support`` None: the dense step, else ``grad`` holds the support's values)."""
    if mutex_lock(mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
        return STOP, 0, 0, lr
    outcome, staleness, step = STOP, 0, lr
    if updates[0] < control[MAX_UPDATES]:
        staleness = updates[0] - token
        step = rule_step(rule, rule_state, lr, staleness, tid)
        apply_step(params, grad, support, n_support, step)
        updates[0] += 1
        outcome = APPLIED
    if mutex_unlock(mutex) != 0:
        store(control, ERROR, 1, "seq_cst")
    return outcome, staleness, 1 if outcome == APPLIED else 0, step


def make_state_per_step(init_params: np.ndarray, n_threads: int) -> LockPerStepState:
    return LockPerStepState(init_params.copy(), new_step_copy_counter(), new_mutex(),
                            np.zeros(1, dtype=np.int64))


@njit(nogil=True, cache=True)
def read_per_step(state, tid, control):
    return read_per_step_locked(state, tid, control, None, 0)


@njit(nogil=True, cache=True)
def read_per_step_sparse(state, tid, control, support, n_support):
    return read_per_step_locked(state, tid, control, support, n_support)


@njit(nogil=True, cache=True)
def read_per_step_locked(state, tid, control, support, n_support):
    """A fresh copy for this step (``np.empty``: on the sparse path only the support's pages
    are written), filled under the mutex as ``read_locked`` fills the thread's own."""
    local = take_step_copy(state.params, state.copies)
    version = copy_under_lock(local, state, control, support, n_support)
    if version == NOT_READ:
        drop_step_copy(state.copies)  # no update follows a read that failed
    return local, version


@njit(nogil=True)  # not cached: it takes the step rule
def update_per_step(state, tid, token, grad, lr, control, rule, rule_state):
    return apply_per_step(state, tid, token, grad, None, 0, lr, control, rule, rule_state)


@njit(nogil=True)  # not cached: it takes the step rule
def update_per_step_sparse(state, tid, token, support, values, n_support, lr, control, rule,
                           rule_state):
    return apply_per_step(state, tid, token, values, support, n_support, lr, control, rule,
                          rule_state)


@njit(nogil=True)
def apply_per_step(state, tid, token, grad, support, n_support, lr, control, rule, rule_state):
    drop_step_copy(state.copies)  # the gradient is computed: the copy is freed before the lock
    return apply_locked(state.params, state.mutex, state.updates, tid, token, grad, support,
                        n_support, lr, control, rule, rule_state)


def support_written(n_params: int, n_support: int) -> int:
    """Elements one applied update writes: the support (the whole vector on the dense path,
    where ``n_support`` is ``n_params``)."""
    return n_support


register_strategy(Strategy(
    name="lock",
    summary="Lock-based AsyncSGD: a mutex guards the copy-out read and the update.",
    make_state=make_state,
    read=read,
    update=update,
    read_sparse=read_sparse,
    update_sparse=update_sparse,
    written_per_update=support_written,
    peak_param_vectors=lambda state, n_threads: 1 + n_threads,
    consistent=True,
    doc=__doc__,
))
register_strategy(Strategy(
    name="lock-per-step-copy",
    summary="Lock-based AsyncSGD as the authors ran it: a copy allocated per step, freed "
            "before the update locks.",
    make_state=make_state_per_step,
    read=read_per_step,
    update=update_per_step,
    read_sparse=read_per_step_sparse,
    update_sparse=update_per_step_sparse,
    written_per_update=support_written,
    peak_param_vectors=lambda state, n_threads: vectors_with_step_copies(state.copies,
                                                                   STEP_COPIES_PEAK),
    live_param_vectors=lambda state, n_threads: vectors_with_step_copies(state.copies,
                                                                   STEP_COPIES_LIVE),
    consistent=True,
    doc=__doc__,
))
