"""tail (TAIL-τ, Bäckström et al., ICML 2022): α · (1 + A · (1 − 2 F(τ))).

F is the empirical CDF of the staleness seen during a short warm-up: F(τ) is
the share of the warm-up sample strictly below τ. With m threads the warm-up
samples the τ of rule calls number (``warmup_from`` − 1)·m + 1 to
``warmup_to``·m, counted over all threads together (from 1; under Leashed-SGD a
call is a CAS attempt): each thread's calls ``warmup_from`` to ``warmup_to``
when the threads keep pace, and a thread that never gets a core holds nothing
up. The authors' framework counts globally too, its iterations rather than
rule calls, and with slightly other bounds (0-based steps strictly between
``warmup_from``·m and ``warmup_to``·m). The call whose sample completes the
count builds F and publishes it. Until then the factor is 1. So an apply
fresher than the warm-up's typical one takes a larger step (up to 1 + A), a
staler one a smaller step (down to 1 − A).

τ is clamped to ``max_staleness`` (the histogram's last bin) by a comparison,
for the sample and the lookup alike; the authors' code wrote
``staleness >> max_staleness``, a shift where a comparison was meant. Their
code also builds F while calls inside the window may still be adding to it;
here the builder is the call whose sample completes the count. With τ = 0
everywhere (SEQ, SYNC) F(0) = 0, so the factor after warm-up is 1 + A. A run
with fewer calls than the window leaves the factor at 1; the result's
``step_rule.state.warmup_complete`` says whether that happened.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from asgdbench.errors import ConfigError
from asgdbench.plugins.params import Param
from asgdbench.plugins.step_rules import StepRule, register_step_rule
from asgdbench.primitives.atomics import fetch_add, load, store
from asgdbench.primitives.gates import gate

LINE = 8  # int64 cells per cache line
# cells of ``shared``, a line apart
CALLS = 0  # rule calls so far, all threads together (counted until the window is claimed)
SAMPLED = 8  # samples added to the histogram
READY = 16  # 1 once ``cdf`` is built
MAX_CALLS = 2 ** 62  # the call counter (int64) stays far from wrapping

# test-only gate points (see asgdbench.primitives.gates)
CALL_CLAIMED = 1  # a call number in the window claimed, its τ not yet added
SAMPLE_ADDED = 2  # τ added to the histogram, the sample not yet counted


class TailState(NamedTuple):
    amplitude: float
    """A: how far the factor moves from 1."""
    first_call: int
    """The first rule call (all threads together, from 1) sampled in the warm-up."""
    last_call: int
    """The last one."""
    max_staleness: int
    """τ above this counts as this (the histogram's last bin)."""
    histogram: np.ndarray
    """The warm-up's τ sample, one bin per τ (atomic adds)."""
    shared: np.ndarray
    """CALLS, SAMPLED and READY, a line apart."""
    cdf: np.ndarray
    """F, built once every sample is in."""


def make_state(n_threads: int, amplitude: float = 1.0, warmup_from: int = 10,
               warmup_to: int = 15, max_staleness: int = 199) -> TailState:
    if amplitude > 1:
        raise ConfigError(f"tail: amplitude={amplitude:g} above 1 would step uphill for stale "
                          f"gradients (factor 1 - A < 0)")
    if warmup_to < warmup_from:
        raise ConfigError(f"tail: warmup_to={warmup_to} is before warmup_from={warmup_from}")
    if warmup_to * n_threads > MAX_CALLS:
        raise ConfigError(f"tail: warmup_to={warmup_to} with {n_threads} threads is a window "
                          f"beyond {MAX_CALLS} rule calls")
    return TailState(amplitude=float(amplitude),
                     first_call=(warmup_from - 1) * n_threads + 1,
                     last_call=warmup_to * n_threads,
                     max_staleness=int(max_staleness),
                     histogram=np.zeros(max_staleness + 1, dtype=np.int64),
                     shared=np.zeros(3 * LINE, dtype=np.int64),
                     cdf=np.zeros(max_staleness + 1, dtype=np.float64))


@njit(nogil=True, cache=True)
def build_cdf(histogram, cdf):
    """``cdf[t]`` = share of the sample strictly below ``t``."""
    total = 0
    for t in range(histogram.shape[0]):
        total += histogram[t]
    below = 0
    for t in range(histogram.shape[0]):
        cdf[t] = below / total
        below += histogram[t]


@njit(nogil=True, cache=True)
def step(lr, staleness, tid, rule_state):
    return gated_step(lr, staleness, tid, rule_state, None)


@njit(nogil=True, cache=True)
def gated_step(lr, staleness, tid, rule_state, gates):
    """``step`` with test-only gates (``None`` in every run: they compile to nothing)."""
    shared = rule_state.shared
    tau = min(max(staleness, 0), rule_state.max_staleness)  # a comparison, both ends
    if load(shared, READY, "acquire") != 0:
        return lr * (1.0 + rule_state.amplitude * (1.0 - 2.0 * rule_state.cdf[tau]))
    if load(shared, CALLS, "monotonic") >= rule_state.last_call:
        return lr  # the window is claimed: its last samples are being added
    call = fetch_add(shared, CALLS, 1) + 1
    if rule_state.first_call <= call <= rule_state.last_call:
        gate(gates, CALL_CLAIMED, tid)
        fetch_add(rule_state.histogram, tau, 1)  # add, then count: the count says it is in
        gate(gates, SAMPLE_ADDED, tid)
        if fetch_add(shared, SAMPLED, 1) == rule_state.last_call - rule_state.first_call:
            build_cdf(rule_state.histogram, rule_state.cdf)  # every sample is in: adds came first
            store(shared, READY, 1, "release")
    return lr


def inspect(rule_state: tuple) -> dict:
    """Whether the warm-up completed: if not, every step of the run had factor 1."""
    return {"warmup_complete": bool(rule_state.shared[READY]),
            "samples": int(rule_state.shared[SAMPLED]),
            "samples_needed": rule_state.last_call - rule_state.first_call + 1}


register_step_rule(StepRule(
    name="tail",
    summary="α (1 + A (1 − 2F(τ))), F: the CDF of τ seen in a warm-up (TAIL-τ).",
    make_state=make_state,
    step=step,
    inspect=inspect,
    params=(
        Param("amplitude", "float", 1.0, "A: how far the factor moves from 1 (0 to 1)",
              minimum=0),
        Param("warmup_from", "int", 10, "first rule call sampled, per thread: call "
              "(warmup_from - 1) m + 1 of all m threads together", minimum=1),
        Param("warmup_to", "int", 15, "last rule call sampled, per thread: call warmup_to m "
              "of all m threads together", minimum=1),
        Param("max_staleness", "int", 199, "τ above this counts as this", minimum=1),
    ),
    doc=__doc__,
))
