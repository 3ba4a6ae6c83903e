"""fleet (Damaskinos et al., Middleware 2020): α · exp(−β τ), β = (2 / τ_th) · ln(1 + τ_th / 2).

τ_th is the staleness threshold, m + 1 for m threads unless ``tau_th`` sets it;
at τ = τ_th the factor is (1 + τ_th / 2)^-2.
"""

import math
from typing import NamedTuple

from numba import njit

from asgdbench.plugins.params import Param
from asgdbench.plugins.step_rules import StepRule, register_step_rule


def beta(tau_th: float) -> float:
    """FLEET's decay rate for the staleness threshold ``tau_th``."""
    return (2.0 / tau_th) * math.log(1.0 + tau_th / 2.0)


class FleetState(NamedTuple):
    beta: float
    """The decay rate for this run's staleness threshold."""


def make_state(n_threads: int, tau_th: float = 0.0) -> FleetState:
    threshold = tau_th if tau_th > 0 else n_threads + 1
    return FleetState(beta=beta(threshold))


@njit(nogil=True, cache=True)
def step(lr, staleness, tid, rule_state):
    return lr * math.exp(-rule_state.beta * staleness)


register_step_rule(StepRule(
    name="fleet",
    summary="α · exp(−βτ), β = (2/τ_th) ln(1 + τ_th/2), τ_th = m + 1 (FLEET).",
    make_state=make_state,
    step=step,
    params=(Param("tau_th", "float", 0.0, "staleness threshold τ_th; 0 means m + 1",
                  minimum=0),),
    doc=__doc__,
))
