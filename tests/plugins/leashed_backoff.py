"""Leashed-SGD backing off after each lost CAS: 2^min(attempts, 10) pause hints, stop-aware."""
from numba import njit

from asgdbench import leashed, register_strategy
from asgdbench.primitives import STOP_FLAG, cpu_pause, load


@njit(nogil=True, cache=True)
def back_off(state, tid, attempts, control):
    for _ in range(1 << min(attempts, 10)):
        if load(control, STOP_FLAG, "monotonic") == 0:
            cpu_pause()

register_strategy(leashed.variant(name="leashed-backoff", after_failed_attempt=back_off,
                                  summary="Leashed-SGD backing off after each lost CAS."))
