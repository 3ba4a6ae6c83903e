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

The sparse path (a sparse workload): each thread publishes its support and values into its
own rows of ``supports``/``values`` (O(nnz), no dense gradient), and after the barrier every
thread applies, for each thread t in turn, the entries of t's support that fall in its own
slice. So the slices are still written by one thread each, without atomics, and each
coordinate receives the m contributions in the order t = 0..m-1, as on the dense path: the
round is bit for bit the dense round of the same gradients (0 off their supports). Each thread
scans all m supports (O(m * nnz) reads, the same as one thread applying them all) but writes
only its slice. The read is the shared vector itself, as on the dense path. The sparse rows
are ``np.empty``, m x d: the operating system commits only the pages a support touches.
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
LINE = 8  # int64 cells per cache line: each thread's support size gets a line


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
    supports: np.ndarray
    """Sparse path: one row per thread, its support of the round (distinct coordinates)."""
    values: np.ndarray
    """Sparse path: one row per thread, its gradient's values aligned with its support."""
    support_sizes: np.ndarray
    """Sparse path: thread t's support size of the round in cell ``t * LINE``."""


def make_state(init_params: np.ndarray, n_threads: int) -> SyncState:
    return SyncState(
        params=init_params.copy(),
        grads=np.zeros((n_threads, init_params.shape[0]), dtype=init_params.dtype),
        barriers=np.zeros(16, dtype=np.int64),
        rounds=np.zeros(1, dtype=np.int64),
        inv_threads=np.array([1.0 / n_threads], dtype=init_params.dtype),
        gates=None,
        round_step=np.zeros(1, dtype=np.float64),
        # np.empty: pages committed only where a sparse round writes (never on the dense path)
        supports=np.empty((n_threads, init_params.shape[0]), dtype=np.int64),
        values=np.empty((n_threads, init_params.shape[0]), dtype=init_params.dtype),
        support_sizes=np.zeros(n_threads * LINE, dtype=np.int64))


@njit(nogil=True, cache=True)
def read(state, tid, control):
    return state.params, state.rounds[0]


@njit(nogil=True, cache=True)
def read_sparse(state, tid, control, support, n_support):
    return state.params, state.rounds[0]


@njit(nogil=True)  # not cached: it takes the step rule, a first-class kernel (steps.rule_step)
def update(state, tid, token, grad, lr, control, rule, rule_state):
    if state.rounds[0] >= control[MAX_UPDATES]:  # every thread decides alike: rounds is stable here
        return STOP, 0, 0, lr
    copy_into(state.grads[tid], grad)
    ok, applied_step = gather_round(state, tid, lr, control, rule, rule_state)
    if not ok:
        return STOP, 0, 0, lr
    params, grads = state.params, state.grads
    n_threads = grads.shape[0]
    lo, hi = my_slice(params.shape[0], n_threads, tid)
    step = applied_step * state.inv_threads[0]
    for t in range(n_threads):
        for i in range(lo, hi):
            params[i] -= step * grads[t, i]
    return end_round(state, tid, control, applied_step)


@njit(nogil=True)  # not cached: it takes the step rule
def update_sparse(state, tid, token, support, values, n_support, lr, control, rule, rule_state):
    if state.rounds[0] >= control[MAX_UPDATES]:  # every thread decides alike: rounds is stable here
        return STOP, 0, 0, lr
    for k in range(n_support):  # publish this thread's sparse gradient in its own rows
        state.supports[tid, k] = support[k]
        state.values[tid, k] = values[k]
    state.support_sizes[tid * LINE] = n_support
    ok, applied_step = gather_round(state, tid, lr, control, rule, rule_state)
    if not ok:
        return STOP, 0, 0, lr
    params = state.params
    n_threads = state.grads.shape[0]
    lo, hi = my_slice(params.shape[0], n_threads, tid)
    step = applied_step * state.inv_threads[0]
    for t in range(n_threads):  # every thread's entries that fall in this thread's slice
        for k in range(state.support_sizes[t * LINE]):
            i = state.supports[t, k]
            if lo <= i < hi:
                params[i] -= step * state.values[t, k]
    return end_round(state, tid, control, applied_step)


@njit(nogil=True, cache=True, inline="always")
def my_slice(n, n_threads, tid):
    """The coordinates ``[lo, hi)`` thread ``tid`` applies: the m slices partition the vector."""
    return tid * n // n_threads, (tid + 1) * n // n_threads


@njit(nogil=True)  # not cached: it takes the step rule
def gather_round(state, tid, lr, control, rule, rule_state):
    """Both paths, once this thread's gradient is published: ask the rule, wait for every
    gradient. (False, lr) if the run stopped meanwhile (this thread withdrew); else
    (True, the round's step), thread 0's answer, ordered by the barrier."""
    barriers = state.barriers
    n_threads = state.grads.shape[0]
    mine = rule_step(rule, rule_state, lr, 0, tid)
    if tid == 0:
        state.round_step[0] = mine  # read by all after the barrier, which orders it
    if not barrier_wait(barriers, GRADIENTS_IN, n_threads, control, STOP_FLAG, state.gates, tid):
        return False, lr
    return True, in_type_of(state.round_step[0], lr)


@njit(nogil=True)
def end_round(state, tid, control, applied_step):
    """Both paths, once this thread's slice is applied: thread 0 counts the round, and nobody
    starts the next until every slice is in. This wait cannot hang: every thread past the
    first barrier reaches it, stop or not, so it need not (and must not) withdraw."""
    barriers, rounds = state.barriers, state.rounds
    n_threads = state.grads.shape[0]
    if tid == 0:
        rounds[0] += 1
    barrier_wait(barriers, UPDATED, n_threads, control, NEVER, state.gates, tid)
    return (APPLIED if tid == 0 else MERGED), 0, 1, applied_step


def sparse_entries_written(n_params: int, n_support: int) -> int:
    """Elements one gradient's entries write (a round writes its m gradients' supports);
    the whole vector on the dense path, where ``n_support`` is ``n_params``."""
    return n_support


register_strategy(Strategy(
    name="sync",
    summary="Synchronous parallel SGD: average m gradients per round, behind barriers.",
    make_state=make_state,
    read=read,
    update=update,
    read_sparse=read_sparse,
    update_sparse=update_sparse,
    written_per_update=sparse_entries_written,
    peak_param_vectors=lambda state, n_threads: 1 + n_threads,  # the vector and m gradients
    # the memory check's bound: the vector, m gradients, and the sparse round's m support rows
    # (int64: two float32 vectors each) and m value rows, reserved with np.empty (untouched,
    # so never committed, on the dense path)
    max_param_vectors=lambda n_threads: 4 * n_threads + 1,
    consistent=True,
    doc=__doc__,
))
