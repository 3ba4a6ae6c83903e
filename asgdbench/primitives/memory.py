"""Per-thread memory that no other thread's writes can reach through the cache.

A core writes a whole 64-byte cache line at a time, so two threads writing different
variables on one line take it from each other on every write (false sharing). numpy
aligns an array only to 16 bytes, and small arrays made one after another lie side by
side: a thread's random state, minibatch rows and clock scratch, written on every update,
shared lines with its neighbours' (once measured with 8 threads: 7 lines shared by
neighbouring RNG rows, 1 by one thread's rows and another's clock scratch). The harness
owns that scratch, so it must not add that cost to any strategy's updates.
"""

from __future__ import annotations

import numpy as np

LINE_BYTES = 64
"""A cache line on x86-64 and most ARM cores (Apple's M-series: 128; padding to 64 there
still halves what two neighbours share)."""


def line_private_zeros(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A C-contiguous array of zeros that starts on a cache line and owns every line it
    touches: nothing else ever lives on them (the allocation is padded on both sides)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    lines = -(-nbytes // LINE_BYTES)
    raw = np.zeros((lines + 1) * LINE_BYTES, np.uint8)  # one line spare, to align the start
    start = -raw.ctypes.data % LINE_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(shape)
