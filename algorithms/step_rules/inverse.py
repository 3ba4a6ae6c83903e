"""inverse: α / (τ + 1), a step shrinking with the staleness τ of the apply.

A fresh gradient (τ = 0) takes the full step; one computed on a vector τ
updates old takes 1/(τ + 1) of it.
"""

from numba import njit

from asgdbench.plugins.step_rules import StepRule, register_step_rule


def make_state(n_threads: int) -> tuple:
    return ()


@njit(nogil=True, cache=True)
def step(lr, staleness, tid, rule_state):
    return lr / (staleness + 1)


register_step_rule(StepRule(
    name="inverse",
    summary="α / (τ + 1): the step shrinks with the staleness τ.",
    make_state=make_state,
    step=step,
    doc=__doc__,
))
