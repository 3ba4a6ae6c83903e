"""The worker loop every thread runs, in nopython code without the GIL.

It is the harness's half of the strategy contract (:mod:`asgdbench.primitives.protocol`):
the loop owns minibatch sampling, the gradient, timing and telemetry, and
calls the strategy's ``read`` / ``update`` / ``retire`` kernels, and hands ``update`` the
step rule (its kernel and state) that decides the step of each apply. A run calls the loop
specialised for its kernels (:func:`compiled_worker_loop`), cached on disk across processes. Each finished gradient appends one
entry (loss, time, outcome) to a shared ring-buffer log that the monitor reads.

The log never blocks a worker. An entry number comes from a fetch-add on the
cursor; the writer then claims the entry's ring slot by a CAS of its sequence
word to "busy" (``-(entry + 1)``), writes the fields and publishes
``entry + 1``. A writer that finds its slot busy or holding a newer entry (it
was preempted for a whole ring) drops its own entry, counts it in
``LOG_LOST`` and marks it in ``skipped``, so it never overwrites another entry
and the monitor, which reads entries in order, never waits for one that will
not come. The monitor re-reads the sequence word after the fields and drops an
entry that changed meanwhile (a seqlock), so it never uses a torn entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from asgdbench.engine.telemetry import (  # the counter layout, declared with the telemetry
    APPLIED_COUNT,
    ATTEMPT_BINS,
    ATTEMPTS_SUM,
    COMPUTED,
    COUNTER_COLUMNS,
    DROPPED_COUNT,
    FACTOR_BIN_WIDTH,
    FACTOR_BINS,
    FACTOR_MAX,
    FACTOR_MIN,
    LOG_LOST,
    MERGED_COUNT,
    STALENESS_BINS,
    STALENESS_MAX,
    STALENESS_SUM,
    STEP_COLUMNS,
    STEP_SUM,
    SUPPORT_SUM,
)
from asgdbench.primitives.atomics import cas, fetch_add, load, store
from asgdbench.primitives.barrier import spin_wait_hint
from asgdbench.primitives.clock import monotonic_ns
from asgdbench.primitives.memory import line_private_zeros
from asgdbench.primitives.protocol import (
    APPLIED,
    DROPPED,
    GO,
    LOG_CURSOR,
    MERGED,
    NOT_READ,
    READY,
    STOP,
    STOP_FLAG,
)
from asgdbench.primitives.rng import sample_batch


@dataclass
class LossLog:
    """Ring buffer of (loss, time, outcome) per gradient.

    ``sequence[i]`` is ``k + 1`` once entry k is in slot i, ``-(k + 1)`` while
    entry k is being written; ``skipped[i]`` is one past the newest entry
    whose writer gave slot i up.
    """

    sequence: np.ndarray
    loss: np.ndarray
    time_ns: np.ndarray
    outcome: np.ndarray
    skipped: np.ndarray

    @classmethod
    def allocate(cls, capacity: int = 1 << 18) -> "LossLog":
        assert capacity & (capacity - 1) == 0, "capacity must be a power of two"
        return cls(np.zeros(capacity, np.int64), np.zeros(capacity, np.float64),
                   np.zeros(capacity, np.int64), np.zeros(capacity, np.int64),
                   np.zeros(capacity, np.int64))

    def arrays(self) -> tuple:
        return (self.sequence, self.loss, self.time_ns, self.outcome, self.skipped)


@dataclass
class ThreadTelemetry:
    """Per-thread counters and histograms, one row per thread, written without atomics."""

    counters: np.ndarray
    staleness: np.ndarray
    attempts: np.ndarray
    steps: np.ndarray
    """Per thread, over applied updates: the sum of steps, the least and greatest factor."""
    factors: np.ndarray
    """Per thread, applied updates by step factor (step / lr), in FACTOR_BIN_WIDTH bins."""

    @classmethod
    def allocate(cls, n_threads: int) -> "ThreadTelemetry":
        # every row a whole number of cache lines, from a line-aligned start: a thread's
        # cells never share a line with another thread's (or another array's)
        steps = line_private_zeros((n_threads, STEP_COLUMNS), np.float64)
        steps[:, FACTOR_MIN], steps[:, FACTOR_MAX] = np.inf, -np.inf
        return cls(line_private_zeros((n_threads, COUNTER_COLUMNS), np.int64),
                   line_private_zeros((n_threads, STALENESS_BINS), np.int64),
                   line_private_zeros((n_threads, ATTEMPT_BINS), np.int64),
                   steps, line_private_zeros((n_threads, FACTOR_BINS), np.int64))

    def arrays(self) -> tuple:
        return (self.counters, self.staleness, self.attempts, self.steps, self.factors)


@njit(nogil=True, cache=True)
def _wait_for_start(control):
    fetch_add(control, READY, 1)
    spins = 0
    while load(control, GO, "acquire") == 0 and load(control, STOP_FLAG, "acquire") == 0:
        spin_wait_hint(spins)
        spins += 1


@njit(nogil=True, cache=True)
def claim_entry(control):
    """The next entry number of the loss log."""
    return fetch_add(control, LOG_CURSOR, 1)


@njit(nogil=True, cache=True)
def commit_entry(log, entry, loss, time_ns, outcome):
    """Write ``entry`` into its ring slot; False (entry dropped) if the slot is busy or newer."""
    sequence, losses, times, outcomes, skipped = log
    slot = entry & (sequence.shape[0] - 1)
    seen = load(sequence, slot, "acquire")
    while True:  # claim the slot: from an older, finished entry to "entry is being written"
        if seen > entry or seen < 0:  # a newer entry, or another writer inside
            _raise_to(skipped, slot, entry + 1)
            return False
        before = cas(sequence, slot, seen, -(entry + 1))
        if before == seen:
            break
        seen = before
    losses[slot] = loss
    times[slot] = time_ns
    outcomes[slot] = outcome
    store(sequence, slot, entry + 1, "release")
    return True


@njit(nogil=True, cache=True)
def _raise_to(cells, index, value):
    """``cells[index] = max(cells[index], value)``, atomically."""
    seen = load(cells, index, "acquire")
    while seen < value:
        before = cas(cells, index, seen, value)
        if before == seen:
            return
        seen = before


@njit(nogil=True, cache=True)
def factor_bin(factor):
    """The histogram bin of a step factor: below 0 in the first, NaN, inf and above in the last."""
    scaled = factor / FACTOR_BIN_WIDTH
    if scaled < 0.0:
        return 0
    if not scaled < FACTOR_BINS - 1:  # also true for NaN
        return FACTOR_BINS - 1
    return int(scaled)


@njit(nogil=True, cache=True)
def _record(tid, loss, outcome, staleness, attempts, step, lr, n_support, telemetry, log,
            control, timespec):
    counters, staleness_hist, attempts_hist, steps, factors = telemetry
    counters[tid, COMPUTED] += 1
    counters[tid, SUPPORT_SUM] += n_support
    if outcome == APPLIED:
        counters[tid, APPLIED_COUNT] += 1
        counters[tid, STALENESS_SUM] += staleness
        counters[tid, STALENESS_MAX] = max(counters[tid, STALENESS_MAX], staleness)
        staleness_hist[tid, min(staleness, STALENESS_BINS - 1)] += 1
        factor = np.float64(step) / np.float64(lr)
        steps[tid, STEP_SUM] += step
        steps[tid, FACTOR_MIN] = min(steps[tid, FACTOR_MIN], factor)
        steps[tid, FACTOR_MAX] = max(steps[tid, FACTOR_MAX], factor)
        factors[tid, factor_bin(factor)] += 1
    elif outcome == DROPPED:
        counters[tid, DROPPED_COUNT] += 1
    elif outcome == MERGED:
        counters[tid, MERGED_COUNT] += 1
    counters[tid, ATTEMPTS_SUM] += attempts
    attempts_hist[tid, min(attempts, ATTEMPT_BINS - 1)] += 1
    entry = claim_entry(control)
    if not commit_entry(log, entry, loss, monotonic_ns(timespec), outcome):
        counters[tid, LOG_LOST] += 1


# The generic loop, with the kernels as arguments: the template of the loop a run calls,
# :func:`compiled_worker_loop`, which binds the kernels as globals of generated source so that
# numba can cache it on disk (see :mod:`asgdbench.engine.loop_cache`). Not cached itself: a
# signature holding first-class kernels cannot be reused by another process.
@njit(nogil=True)
def worker_loop(read, update, retire, gradient, state, tid, data, n_samples, work, grad, rows,
                rng, lr, rule, rule_state, control, log, telemetry, timespec):
    """Train until the stop flag is set or the strategy says STOP.

    ``telemetry`` is :meth:`ThreadTelemetry.arrays`.
    """
    _wait_for_start(control)
    while load(control, STOP_FLAG, "monotonic") == 0:
        sample_batch(rng, n_samples, rows)
        params, token = read(state, tid, control)
        if token == NOT_READ:
            break
        loss = gradient(params, data, rows, work, grad)
        outcome, staleness, attempts, step = update(state, tid, token, grad, lr, control,
                                                    rule, rule_state)
        if outcome == STOP:
            break
        _record(tid, loss, outcome, staleness, attempts, step, lr, grad.shape[0], telemetry,
                log, control, timespec)
    retire(state, tid)


# The loop of a sparse workload: the same template, on the sparse halves of the contract
# (the workload's ``support`` and sparse ``gradient``, the strategy's ``read_sparse`` and
# ``update_sparse``). Nothing in it is O(n_params): each step costs the minibatch's nnz.
@njit(nogil=True)
def sparse_worker_loop(read_sparse, update_sparse, retire, support, gradient, state, tid, data,
                       n_samples, work, sup, values, rows, rng, lr, rule, rule_state, control,
                       log, telemetry, timespec):
    """Train until the stop flag is set or the strategy says STOP, on sparse gradients.

    ``sup`` and ``values`` are the thread's buffers of ``max_support(batch_size)`` elements:
    the minibatch's support and the partial derivatives aligned with it.
    """
    _wait_for_start(control)
    while load(control, STOP_FLAG, "monotonic") == 0:
        sample_batch(rng, n_samples, rows)
        n_support = support(data, rows, work, sup)
        params, token = read_sparse(state, tid, control, sup, n_support)
        if token == NOT_READ:
            break
        loss = gradient(params, data, rows, work, sup, n_support, values)
        outcome, staleness, attempts, step = update_sparse(state, tid, token, sup, values,
                                                           n_support, lr, control, rule,
                                                           rule_state)
        if outcome == STOP:
            break
        _record(tid, loss, outcome, staleness, attempts, step, lr, n_support, telemetry, log,
                control, timespec)
    retire(state, tid)


KERNEL_PARAMETERS = ("read", "update", "retire", "gradient", "rule")
"""The parameters of :func:`worker_loop` that are kernels, bound when it is specialised."""

SPARSE_KERNEL_PARAMETERS = ("read_sparse", "update_sparse", "retire", "support", "gradient",
                            "rule")
"""The parameters of :func:`sparse_worker_loop` that are kernels."""


def compiled_worker_loop(kernels: dict[str, Any], args: tuple, *, cache: bool = True) -> Any:
    """:func:`worker_loop` compiled for ``kernels`` (a kernel per name in
    :data:`KERNEL_PARAMETERS`), called with its other arguments in order, as ``args``.

    Loaded from the compile cache when this combination (and argument types) ran on this
    machine before; ``cache=False`` compiles a fresh copy in memory whose LLVM IR numba
    shows. Compiling happens here, so the caller's clock never sees it.
    """
    from asgdbench.engine.loop_cache import specialize

    return specialize(worker_loop, kernels, args, cache=cache)


def compiled_sparse_worker_loop(kernels: dict[str, Any], args: tuple, *,
                                cache: bool = True) -> Any:
    """:func:`sparse_worker_loop` compiled for ``kernels`` (one per name in
    :data:`SPARSE_KERNEL_PARAMETERS`), as :func:`compiled_worker_loop` compiles the dense one."""
    from asgdbench.engine.loop_cache import specialize

    return specialize(sparse_worker_loop, kernels, args, cache=cache)

