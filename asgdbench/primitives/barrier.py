"""A spinning barrier for nopython code that a stopping thread can leave.

The barrier lives in one int64 cell packed as ``generation << 32 | arrived``.
Arriving and completing are one CAS each, so a waiter that sees the run's stop
flag can *withdraw* (undo its arrival) exactly when the barrier has not yet
completed: either every party goes through together, or the barrier never
opens. That is what keeps SYNC from deadlocking when threads exit mid-round.
Waiters spin briefly, then yield the core, because runs are often
oversubscribed (more threads than cores).
"""

from numba import njit

from asgdbench.primitives.atomics import cas, cpu_pause, load, os_yield
from asgdbench.primitives.gates import gate

_COUNT_MASK = (1 << 32) - 1
_SPINS_BEFORE_YIELD = 64

# test-only gate points (see asgdbench.primitives.gates)
STOP_SEEN = 10  # a waiter saw the stop flag and has not yet tried to withdraw


@njit(nogil=True, cache=True, inline="always")
def spin_wait_hint(spins):
    """Back off inside a spin loop: ``pause`` first, then give up the core."""
    if spins < _SPINS_BEFORE_YIELD:
        cpu_pause()
    else:
        os_yield()


@njit(nogil=True, cache=True)
def barrier_wait(barrier, index, n_parties, stop, stop_index, gates=None, tid=0):
    """Wait until ``n_parties`` threads arrive at ``barrier[index]``.

    Returns True when the barrier opened. Returns False (having withdrawn) if
    ``stop[stop_index]`` became non-zero before it opened; pass a ``stop`` cell
    that is never set to wait unconditionally. ``gates``/``tid``: test-only.
    """
    while True:  # arrive, or complete if last
        word = load(barrier, index, "seq_cst")
        generation = word >> 32
        arrived = word & _COUNT_MASK
        if arrived + 1 == n_parties:
            desired = (generation + 1) << 32
        else:
            desired = word + 1
        if cas(barrier, index, word, desired) == word:
            if arrived + 1 == n_parties:
                return True
            break
    spins = 0
    while True:
        word = load(barrier, index, "seq_cst")
        if word >> 32 != generation:
            return True
        if load(stop, stop_index, "seq_cst") != 0:
            gate(gates, STOP_SEEN, tid)
            # Withdraw only if the barrier is still in our generation.
            if cas(barrier, index, word, word - 1) == word:
                return False
            continue
        spin_wait_hint(spins)
        spins += 1
