"""Per-thread random streams for minibatch sampling (xoshiro256**).

Each thread owns a 4-word state seeded from ``numpy.random.SeedSequence``, so a
run is reproducible from one seed and no two threads share a stream or a lock.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from asgdbench.primitives.memory import LINE_BYTES, line_private_zeros

STATE_WORDS = 4


def thread_states(seed: int, n_threads: int) -> np.ndarray:
    """Independent xoshiro states, one row per thread, each row a cache line of its own."""
    states = line_private_zeros((n_threads, LINE_BYTES // 8), np.uint64)
    for tid, child in enumerate(np.random.SeedSequence(seed).spawn(n_threads)):
        states[tid, :STATE_WORDS] = child.generate_state(STATE_WORDS, np.uint64)
    return states


@njit(inline="always")
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@njit(nogil=True, cache=True)
def next_u64(state):
    """The next 64 random bits of the stream in ``state`` (advances it)."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    result = _rotl(s1 * uint64(5), 7) * uint64(9)
    t = s1 << uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return result


@njit(nogil=True, cache=True)
def sample_batch(state, n_samples, out):
    """Fill ``out`` with indices drawn uniformly, with replacement, from ``range(n_samples)``."""
    n = uint64(n_samples)
    for j in range(out.shape[0]):
        # Lemire's multiply-shift on the top 32 bits: unbiased enough for n < 2**32.
        out[j] = np.int64(((next_u64(state) >> uint64(32)) * n) >> uint64(32))
