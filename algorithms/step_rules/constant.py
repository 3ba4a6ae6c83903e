"""constant: every apply takes the base step α, whatever its staleness (the default)."""

from numba import njit

from asgdbench.plugins.step_rules import StepRule, register_step_rule


def make_state(n_threads: int) -> tuple:
    return ()


@njit(nogil=True, cache=True)
def step(lr, staleness, tid, rule_state):
    return lr


register_step_rule(StepRule(
    name="constant",
    summary="α: the same step for every apply.",
    make_state=make_state,
    step=step,
    doc=__doc__,
))
