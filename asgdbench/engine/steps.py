"""Shared SGD steps that strategies compose; each is one pass over a vector.

Kept apart from the strategies so that no two strategies carry their own copy
of the same loop, and so that the benchmarks can time the steps alone.
"""

from numba import njit


@njit(nogil=True, cache=True, inline="always")
def sgd_step_into(destination, source, grad, lr):
    """``destination = source - lr * grad`` (the publish step of Leashed-SGD)."""
    for i in range(destination.shape[0]):
        destination[i] = source[i] - lr * grad[i]


@njit(nogil=True, cache=True, inline="always")
def sgd_step_inplace(params, grad, lr):
    """``params -= lr * grad``, component by component (racy if shared unguarded)."""
    for i in range(params.shape[0]):
        params[i] -= lr * grad[i]


@njit(nogil=True, cache=True, inline="always")
def copy_into(destination, source):
    """``destination[:] = source`` (a consistent read under a lock)."""
    for i in range(destination.shape[0]):
        destination[i] = source[i]


@njit(nogil=True, cache=True)
def retire_nothing(state, tid):
    """Default ``retire`` kernel, for strategies whose threads hold nothing at exit."""
    return
