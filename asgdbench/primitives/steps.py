"""Shared SGD steps that strategies compose; each is one pass over a vector.

Kept apart from the strategies so that no two strategies carry their own copy
of the same loop, and so that the benchmarks can time the steps alone.
"""

import numpy as np
from numba import njit
from numba.extending import overload

from asgdbench.primitives.atomics import cas, fetch_add, load
from asgdbench.primitives.gates import gate


@njit(nogil=True, cache=True, inline="always")
def sgd_step_into(destination, source, grad, lr):
    """``destination = source - lr * grad`` (the publish step of Leashed-SGD).

    One pass, vectorised by LLVM (two loads, a multiply, a subtract and a store
    per SIMD lane group), bit for bit NumPy's ``source - lr * grad``: no
    ``fastmath``, so nothing contracts the multiply and subtract into an FMA,
    which rounds once and would change the result (tests/test_steps.py checks
    the code and the bits). The pass is memory-bound, so neither FMA nor wider
    unrolling would speed it up; non-temporal stores measured slower here (the
    new vector is read again at once, and the three vectors fit in L3).
    ``destination`` may be ``source`` (then it is ``sgd_step_inplace``).
    """
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


STEP_COPIES_LIVE, STEP_COPIES_PEAK = 0, 8
"""Cells of a per-step-copy counter array (``new_step_copy_counter``), a cache line each."""


def new_step_copy_counter() -> np.ndarray:
    """The counter of live per-step copies and its high-water mark."""
    return np.zeros(2 * 8, dtype=np.int64)


def vectors_with_step_copies(counter: np.ndarray, cell: int) -> int:
    """The shared vector and the per-step copies of a counter cell: ``STEP_COPIES_PEAK``, the
    most alive at once (``peak_param_vectors``), or ``STEP_COPIES_LIVE``, those alive now
    (``live_param_vectors``, a racy sample)."""
    return 1 + int(counter[cell])


# test-only gate points of take_step_copy (see asgdbench.primitives.gates)
STEP_COPY_PEAK_SEEN = 1  # the peak loaded (or a raise lost), the raising CAS not yet tried
STEP_COPY_COUNTED = 2  # the copy counted live and the peak raised, the vector not yet allocated


@njit(nogil=True, cache=True)
def take_step_copy(params, counter):
    """A fresh vector for this step only (the authors' ``new``), counted live; not yet filled.

    Counted before it is allocated, and the strategy calls :func:`drop_step_copy`
    in ``update``, after numba has freed it (once the worker's gradient is
    computed): the live count is never below the copies really allocated, so the
    peak is never understated.
    """
    return gated_take_step_copy(params, counter, None, 0)


@njit(nogil=True, cache=True)
def gated_take_step_copy(params, counter, gates, tid):
    """``take_step_copy`` with test-only gates (``None`` in every run: they compile to nothing)."""
    live = fetch_add(counter, STEP_COPIES_LIVE, 1) + 1
    seen = load(counter, STEP_COPIES_PEAK, "monotonic")
    # raise the peak to ``live``, unless another thread has raised it past that meanwhile
    while seen < live:
        gate(gates, STEP_COPY_PEAK_SEEN, tid)
        before = cas(counter, STEP_COPIES_PEAK, seen, live)
        if before == seen:
            break
        seen = before
    gate(gates, STEP_COPY_COUNTED, tid)
    local = np.empty_like(params)
    return local


@njit(nogil=True, cache=True)
def drop_step_copy(counter):
    """The step's copy is dead (its gradient is computed): count it freed."""
    fetch_add(counter, STEP_COPIES_LIVE, -1)


# Not cached on disk: every strategy without a ``retire`` shares this kernel, and numba keeps
# all the signatures a cached function was compiled for in one index file, which it unpickles
# whole. A plugin's state class (``asgdbench_plugin_x.State``) in that index would make every
# later process that has not loaded the plugin fail to load it. It compiles to nothing anyway.
@njit(nogil=True)
def retire_nothing(state, tid):
    """Default ``retire`` kernel, for strategies whose threads hold nothing at exit."""
    return


def in_type_of(value, template):
    """``value`` converted to ``template``'s scalar type (nopython only; see its overload)."""
    return value


@overload(in_type_of)
def _in_type_of(value, template):
    target = template  # a numba scalar type: calling it converts

    def convert(value, template):
        return target(value)
    return convert


# Not cached on disk: a kernel taking a first-class kernel (the rule) is
# specialised on it, and numba's cache misses on such a signature in every new
# process and writes another file each time (measured). Strategies' ``update``
# kernels, which take the rule too, are uncached for the same reason.
@njit(nogil=True)
def rule_step(rule, rule_state, lr, staleness, tid):
    """The step of one apply: the step rule at this apply's staleness, in ``lr``'s type.

    The cast keeps a float32 model's update loop in float32 whatever the rule
    computes in (``lr / (tau + 1)`` is float64 in numba).
    """
    return in_type_of(rule(lr, staleness, tid, rule_state), lr)


# -- the sparse path: a step touches only its support (issue 22) -----------------------------
# ``support[:n_support]`` holds distinct coordinates and ``values[:n_support]`` the partial
# derivatives aligned with them, as a sparse workload's ``support`` and ``gradient`` kernels
# write them (asgdbench.plugins.workloads).

@njit(nogil=True, cache=True, inline="always")
def sparse_step_inplace(params, support, values, n_support, step):
    """``params[support[k]] -= step * values[k]`` for ``k < n_support``: O(nnz), racy if shared
    unguarded; bit for bit the dense step with a gradient that is 0 off the support."""
    for k in range(n_support):
        params[support[k]] -= step * values[k]


@njit(nogil=True, cache=True, inline="always")
def sparse_copy_into(local, params, support, n_support):
    """``local[j] = params[j]`` for ``j`` in the support (a consistent read under a lock); the
    other coordinates of ``local`` are left as they were."""
    for k in range(n_support):
        local[support[k]] = params[support[k]]


@njit(nogil=True, cache=True, inline="always")
def sparse_step_into(out, base, support, values, n_support, step):
    """``out = base``, then the sparse step on ``out``: a new immutable version built from its
    base (Leashed-SGD's publish). O(d) for the copy, whatever the support's size."""
    for i in range(out.shape[0]):
        out[i] = base[i]
    for k in range(n_support):
        out[support[k]] -= step * values[k]
