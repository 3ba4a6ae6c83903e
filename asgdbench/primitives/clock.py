"""A monotonic nanosecond clock callable from nopython code.

Comparable with :func:`time.monotonic_ns` (both read ``CLOCK_MONOTONIC``), so
timestamps taken by workers line up with the harness's own.
"""

import time

import numpy as np
from numba import njit, types

_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.intp))
_CLOCK_MONOTONIC = np.int32(time.CLOCK_MONOTONIC)


@njit(nogil=True, cache=True)
def monotonic_ns(timespec):
    """Nanoseconds of ``CLOCK_MONOTONIC``; ``timespec`` is a thread's own int64[2] scratch."""
    _clock_gettime(_CLOCK_MONOTONIC, timespec.ctypes.data)
    return timespec[0] * 1_000_000_000 + timespec[1]
