"""A step rule for tests: the step halves with each unit of staleness, down to 2^-limit.

Every step is a power of two times lr, so on the probe's float64 arithmetic
sums of steps are exact, whatever their order.
"""

from typing import NamedTuple

from numba import njit

from asgdbench import Param, StepRule, register_step_rule


class HalvingState(NamedTuple):
    limit: int


def make_state(n_threads, limit=4):
    return HalvingState(limit)


@njit(nogil=True, cache=True)
def step(lr, staleness, tid, rule_state):
    return lr * 0.5 ** min(staleness, rule_state.limit)


register_step_rule(StepRule(
    name="halving",
    summary="lr * 2^-min(τ, limit) (a test rule).",
    make_state=make_state,
    step=step,
    params=(Param("limit", "int", 4, "the most halvings", minimum=0),),
    doc=__doc__,
))
