"""The consistency stress: a strategy's real kernels in many threads, every read checked.

:func:`consistency_stress` runs a strategy's real kernels in many threads on
the consistency probe's arithmetic: float64, start vector 0, a constant
gradient ``c`` and a power-of-two step, so that the vector of version ``v`` is
exactly ``-lr * c * v`` in every component. Every read is then checked three
ways, each a direct look at memory rather than a counter:

- *torn*: the components disagree (the vector was caught mid-write);
- *wrong version*: the vector is not the one of the version its token names;
- *changed while held*: after a "gradient" that holds the vector for a while
  (spinning, so that other threads publish, recycle and rewrite meanwhile), the
  vector is no longer what was read: someone wrote a vector a reader held.

The final vector is compared with the closed form for the exact update budget,
so a lost update shows as a wrong number, whatever any counter says.

With a step rule other than ``constant`` the steps differ from update to
update, so there is no closed form per version: a read is then checked
against every other read of the same version (the first one seen is
recorded), and the final vector against ``-c`` times the sum of the steps the
applied updates report. That sum is exact when every step is a power of two
times ``lr`` (a rule like ``tests/plugins/halving.py``); otherwise the two
differ by rounding only, at most one ulp of the result per update.

``sparse=True`` runs the strategy's sparse path (``read_sparse``/``update_sparse``) the
same way. With a fixed support (the default) every update touches the same subset S of
the coordinates (every ``SPARSE_STRIDE``-th), so version v is ``-lr * c * v`` on S and 0
off S: torn and wrong-version reads are checked on S, and a write off S shows in the final
vector. With ``random_support=True`` each update touches a fresh random set of coordinates;
the probe counts, per thread, the steps applied to each coordinate, and the final vector
must be ``-c`` times those sums, coordinate by coordinate: a lost update is a wrong number.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from asgdbench.engine.loop_cache import specialize
from asgdbench.plugins.step_rules import DEFAULT_STEP, StepSpec, parse_step_spec
from asgdbench.plugins.strategies import StrategySpec, parse_spec
from asgdbench.primitives.atomics import cpu_pause, load
from asgdbench.primitives.protocol import (
    APPLIED,
    CONTROL_CELLS,
    DROPPED,
    ERROR,
    MAX_UPDATES,
    MERGED,
    NOT_READ,
    STOP,
    STOP_FLAG,
)
from asgdbench.primitives.rng import sample_batch, thread_states

SPARSE_STRIDE = 8  # the fixed support S: every 8th coordinate
RANDOM_SUPPORT = 16  # coordinates drawn per update in the random-support mode (duplicates merged)
STEP = 2.0 ** -7  # lr
GRADIENT = 0.5  # c
UPDATE_VALUE = STEP * GRADIENT  # every component drops by this much per update

# columns of the per-thread tallies
(COMPUTED, APPLIED_COUNT, DROPPED_COUNT, TORN, WRONG_VERSION, CHANGED_WHILE_HELD,
 MAX_ATTEMPTS) = range(7)
TALLY_COLUMNS = 8


@njit(nogil=True, cache=True)
def _disagrees(params, value):
    for i in range(params.shape[0]):
        if params[i] != value:
            return True
    return False


def closed_form_ulps(threads: int) -> int:
    """The ulps per update the closed form allows: 0 (exact) when ``threads`` is a power of
    two; else ``threads``, since a strategy that averages a round of m gradients (SYNC) applies
    m shares of ``lr / m``, inexact in binary, each subtraction rounding. The slack is capped
    (:func:`closed_form_slack`) below a quarter of one share, so a lost share, a lost update
    or a wrong version is never within it."""
    return 0 if threads & (threads - 1) == 0 else threads


@njit(nogil=True, cache=True, inline="always")
def closed_form_slack(ulps, updates, expected, threads):
    """How far a vector ``updates`` updates in may be from the closed form ``expected``:
    ``ulps`` ulps of it per update, at most a quarter of one share ``UPDATE_VALUE / threads``."""
    return min(ulps * updates * np.spacing(abs(expected)), UPDATE_VALUE / (4 * threads))


@njit(nogil=True, cache=True, inline="always")
def _is_version(first, token, closed_form_ulps, threads, seen):
    """Whether a whole vector whose components are all ``first`` is version ``token``: the
    closed form ``-lr * c * token`` (constant rule) within :func:`closed_form_slack` of
    ``closed_form_ulps`` ulps per update (0: exactly), else, if ``closed_form_ulps`` is
    negative, the first read of that version recorded in ``seen`` (recorded now if none
    was; NaN: none yet)."""
    if closed_form_ulps >= 0:
        expected = -UPDATE_VALUE * token
        return abs(first - expected) <= closed_form_slack(closed_form_ulps, token, expected,
                                                          threads)
    if 0 <= token < seen.shape[0]:
        recorded = seen[token]
        if np.isnan(recorded):
            seen[token] = first
        elif recorded != first:
            return False
    return True


@njit(nogil=True, cache=True, inline="always")
def _tally(tallies, step_sums, tid, outcome, attempts, step):
    """Count one update's outcome in this thread's row (both probe workers)."""
    tallies[tid, COMPUTED] += 1
    if outcome == APPLIED:
        tallies[tid, APPLIED_COUNT] += 1
        step_sums[tid, 0] += step
    elif outcome == DROPPED:
        tallies[tid, DROPPED_COUNT] += 1
    tallies[tid, MAX_ATTEMPTS] = max(tallies[tid, MAX_ATTEMPTS], attempts)


@njit(nogil=True)  # the template: consistency_stress runs it specialised, cached on disk
def _probe_worker(read, update, retire, rule, rule_state, state, tid, control, grad, lr,
                  hold_spins, check_version, closed_form_ulps, seen, tallies, step_sums):
    """A worker loop whose gradient is a check of the vector it was given.

    ``closed_form_ulps`` >= 0: version v is ``-lr * c * v`` (constant rule), up to that
    many ulps per update (:func:`closed_form_ulps`); else every
    read of version v must equal the first one recorded in ``seen[v]`` (NaN: none yet).
    """
    while load(control, STOP_FLAG, "monotonic") == 0:
        params, token = read(state, tid, control)
        if token == NOT_READ:
            break
        first = params[0]
        if _disagrees(params, first):
            tallies[tid, TORN] += 1
        elif check_version and not _is_version(first, token, closed_form_ulps,
                                               tallies.shape[0], seen):
            tallies[tid, WRONG_VERSION] += 1
        for _ in range(hold_spins):
            cpu_pause()
        if _disagrees(params, first):
            tallies[tid, CHANGED_WHILE_HELD] += 1
        outcome, staleness, attempts, step = update(state, tid, token, grad, lr, control, rule,
                                                    rule_state)
        if outcome == STOP:
            break
        _tally(tallies, step_sums, tid, outcome, attempts, step)
    retire(state, tid)


@njit(nogil=True, cache=True)
def _disagrees_on(params, support, n_support, value):
    for k in range(n_support):
        if params[support[k]] != value:
            return True
    return False


@njit(nogil=True, cache=True)
def _draw_support(rng, draws, marks, support):
    """A random set of distinct coordinates into ``support``; how many (``marks`` all False
    before and after)."""
    sample_batch(rng, marks.shape[0], draws)
    n_support = 0
    for j in draws:
        if not marks[j]:
            marks[j] = True
            support[n_support] = j
            n_support += 1
    for k in range(n_support):
        marks[support[k]] = False
    return n_support


@njit(nogil=True)  # the template of the sparse path's stress, specialised like _probe_worker
def _sparse_probe_worker(read_sparse, update_sparse, retire, rule, rule_state, state, tid,
                         control, support, n_fixed, values, lr, hold_spins, check_version,
                         closed_form_ulps, seen, tallies, step_sums, rng, draws, marks,
                         coordinate_steps):
    """:func:`_probe_worker` on the sparse path. ``n_fixed > 0``: the support is always
    ``support[:n_fixed]`` and reads are checked on it; ``n_fixed == 0``: a random support per
    update, and the steps applied to each coordinate are summed in ``coordinate_steps[tid]``."""
    while load(control, STOP_FLAG, "monotonic") == 0:
        n_support = n_fixed
        if n_fixed == 0:
            n_support = _draw_support(rng, draws, marks, support)
        params, token = read_sparse(state, tid, control, support, n_support)
        if token == NOT_READ:
            break
        if n_fixed > 0:
            first = params[support[0]]
            if _disagrees_on(params, support, n_support, first):
                tallies[tid, TORN] += 1
            elif check_version and not _is_version(first, token, closed_form_ulps,
                                               tallies.shape[0], seen):
                tallies[tid, WRONG_VERSION] += 1
            for _ in range(hold_spins):
                cpu_pause()
            if _disagrees_on(params, support, n_support, first):
                tallies[tid, CHANGED_WHILE_HELD] += 1
        outcome, staleness, attempts, step = update_sparse(state, tid, token, support, values,
                                                           n_support, lr, control, rule,
                                                           rule_state)
        if outcome == STOP:
            break
        _tally(tallies, step_sums, tid, outcome, attempts, step)
        if n_fixed == 0 and (outcome == APPLIED or outcome == MERGED):
            for k in range(n_support):  # a merged gradient's share is set by _report's caller
                coordinate_steps[tid, support[k]] += step
    retire(state, tid)


@dataclass
class StressReport:
    """What :func:`consistency_stress` saw; ``final_params`` against the closed form is the verdict."""

    spec: str
    threads: int
    updates: int
    computed: int
    applied: int
    dropped: int
    torn_reads: int
    wrong_versions: int
    changed_while_held: int
    max_attempts: int
    error: int
    """The run's ERROR cell: non-zero if the strategy found a broken invariant (a full pool)."""
    final_params: np.ndarray = field(repr=False)
    state: tuple = field(repr=False)
    step: str = DEFAULT_STEP
    step_sum: float = 0.0
    """The sum of the steps the applied updates report (with a rule: the final vector is -c times it)."""
    sparse: str = ""
    """The sparse path's mode: "" (dense), "fixed" (support S) or "random" (a support per update)."""
    expected_sparse: np.ndarray | None = field(default=None, repr=False)
    """Sparse runs: the final vector the applied updates imply (0 off the supports)."""
    merged: int = 0
    """Gradients merged into a round rather than applied alone (SYNC averages a round's)."""

    def expected_params(self, updates: int | None = None) -> np.ndarray:
        """The exact vector after ``updates`` updates (default: the budget).

        With a step rule other than constant, only the budget's: ``-c`` times the steps' sum.
        On the sparse path, the budget's only: 0 off the supports.
        """
        if self.expected_sparse is not None:
            return self.expected_sparse
        if self.step != DEFAULT_STEP:
            return np.full(self.final_params.size, -GRADIENT * self.step_sum)
        n = self.updates if updates is None else updates
        return np.full(self.final_params.size, -UPDATE_VALUE * n)

    @property
    def final_is_exact(self) -> bool:
        """The final vector is the closed form after exactly the budget: no update lost or torn."""
        return bool(np.array_equal(self.final_params, self.expected_params()))

    @property
    def ulps_per_update(self) -> int:
        """The rounding the final vector may carry per update: 0 where the arithmetic is exact;
        one ulp for a rule's steps (unless powers of two); ``threads`` for rounds that merged
        gradients over a thread count that is not a power of two (:func:`closed_form_ulps`)."""
        if self.merged and closed_form_ulps(self.threads):
            return closed_form_ulps(self.threads)
        return 0 if self.step == DEFAULT_STEP else 1

    @property
    def final_within_rounding(self) -> bool:
        """Exact, or off by at most :attr:`ulps_per_update` ulps per update (at least one)."""
        expected = self.expected_params()
        bound = self.updates * max(1, self.ulps_per_update) * np.spacing(np.abs(expected))
        if self.step == DEFAULT_STEP:  # every update a whole step: never a share's worth
            bound = np.minimum(bound, UPDATE_VALUE / (4 * self.threads))
        if self.sparse:  # 0 off the supports stays exactly 0
            bound = np.where(expected == 0, 0.0, bound)
        return bool(np.all(np.abs(self.final_params - expected) <= bound))

    @property
    def no_lost_update(self) -> bool:
        """The verdict on the final vector: exact where the arithmetic is exact, else within
        :attr:`ulps_per_update`; one lost update moves it by a whole step, far beyond that."""
        return self.final_within_rounding if self.ulps_per_update else self.final_is_exact

    @property
    def clean(self) -> bool:
        """Nothing torn, rewritten while held, of the wrong version, or flagged as an error."""
        return (self.torn_reads, self.wrong_versions, self.changed_while_held, self.error) == \
            (0, 0, 0, 0)


def consistency_stress(spec: str | StrategySpec, threads: int, updates: int, *,
                       n_params: int = 512, hold_spins: int = 64,
                       timeout_s: float = 120.0,
                       step: str | StepSpec | None = None, sparse: bool = False,
                       random_support: bool = False, seed: int = 0) -> StressReport:
    """Run ``spec`` with ``threads`` threads until exactly ``updates`` updates are applied.

    ``step`` is the step rule (default ``constant``). Raises AssertionError if
    the threads do not finish within ``timeout_s`` (a deadlock or livelock);
    they are told to stop first. ``sparse``: the strategy's sparse path, on a fixed
    support or (``random_support``) a random one per update, drawn from ``seed``
    (see the module docstring).
    """
    spec = parse_spec(spec)
    step_spec = parse_step_spec(step)
    strategy = spec.strategy
    if sparse:
        return _sparse_stress(spec, step_spec, threads, updates, n_params, hold_spins,
                              timeout_s, random_support, seed)
    state = strategy.make_state(np.zeros(n_params), threads, **spec.kwargs)
    grad = np.full(n_params, GRADIENT)
    tallies, step_sums, ulps, seen = _probe_records(step_spec, threads, updates)
    kernels = {"read": strategy.read, "update": strategy.update, "retire": strategy.retire,
               "rule": step_spec.rule.step}
    check_version = strategy.consistent

    def arguments(rule_state: tuple, tid: int, control: np.ndarray) -> tuple:
        return (rule_state, state, tid, control, grad, STEP, hold_spins, check_version,
                ulps, seen, tallies, step_sums)

    control = _run_probe(_probe_worker, kernels, arguments, step_spec, threads, updates,
                         timeout_s, spec.label)
    return _report(spec, step_spec, threads, updates, tallies, step_sums, control, state)


def _probe_records(step_spec: StepSpec, threads: int, updates: int) -> tuple:
    """What a probe worker writes as it checks: per-thread tallies and step sums, the
    closed form's ulps per update (-1: none, a rule's steps vary) and the first read of each
    version (for the rule case)."""
    tallies = np.zeros((threads, TALLY_COLUMNS), np.int64)
    step_sums = np.zeros((threads, TALLY_COLUMNS), np.float64)
    closed_form = step_spec.name == DEFAULT_STEP
    seen = np.full(0 if closed_form else updates + 1, np.nan)
    return tallies, step_sums, closed_form_ulps(threads) if closed_form else -1, seen


def _run_probe(template: Any, kernels: dict[str, Any], arguments: Callable[..., tuple],
               step_spec: StepSpec, threads: int, updates: int, timeout_s: float,
               label: str) -> np.ndarray:
    """Compile ``template`` for ``kernels`` (or load it), then run ``threads`` of it until
    ``updates`` updates are applied; the run's control array. ``arguments(rule_state, tid,
    control)`` are a thread's arguments."""
    compile_control = np.zeros(CONTROL_CELLS, np.int64)
    compile_control[STOP_FLAG] = 1  # runs the compiled loop without doing anything
    compile_arguments = arguments(step_spec.make_state(threads), 0, compile_control)
    probe_worker = specialize(template, kernels, compile_arguments)  # compiled or cached
    probe_worker(*compile_arguments)

    rule_state = step_spec.make_state(threads)
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = updates
    _run_stress_threads(probe_worker, lambda tid: arguments(rule_state, tid, control), control,
                        threads, f"{label} with {threads} threads did not finish "
                        f"{updates} updates within {timeout_s:g} s", timeout_s)
    return control


def _merged(tallies: np.ndarray) -> int:
    """Gradients neither applied alone nor dropped: merged into a round (SYNC)."""
    totals = tallies.sum(axis=0)
    return int(totals[COMPUTED] - totals[APPLIED_COUNT] - totals[DROPPED_COUNT])


def _run_stress_threads(worker: Any, arguments: Any, control: np.ndarray, threads: int,
                        timeout_message: str, timeout_s: float) -> None:
    """Start ``threads`` threads of ``worker`` and join them within ``timeout_s``; if they do
    not end, raise the stop flag, join them again (10 s) and raise AssertionError."""
    workers = [threading.Thread(target=worker, daemon=True, name=f"stress-{tid}",
                                args=arguments(tid))
               for tid in range(threads)]
    for thread in workers:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in workers:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in workers):
        control[STOP_FLAG] = 1
        deadline = time.monotonic() + 10.0
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise AssertionError(timeout_message)


def _report(spec: StrategySpec, step_spec: StepSpec, threads: int, updates: int,
            tallies: np.ndarray, step_sums: np.ndarray, control: np.ndarray, state: tuple,
            **sparse: Any) -> StressReport:
    strategy = spec.strategy
    totals = tallies.sum(axis=0)
    return StressReport(
        spec=spec.label, threads=threads, updates=updates,
        computed=int(totals[COMPUTED]), applied=int(totals[APPLIED_COUNT]),
        dropped=int(totals[DROPPED_COUNT]), torn_reads=int(totals[TORN]),
        merged=_merged(tallies),
        wrong_versions=int(totals[WRONG_VERSION]),
        changed_while_held=int(totals[CHANGED_WHILE_HELD]),
        max_attempts=int(tallies[:, MAX_ATTEMPTS].max()),
        error=int(control[ERROR]),
        final_params=np.array(strategy.final_params(state), copy=True), state=state,
        step=step_spec.label, step_sum=float(step_sums[:, 0].sum()), **sparse,
    )


def _sparse_stress(spec: StrategySpec, step_spec: StepSpec, threads: int, updates: int,
                   n_params: int, hold_spins: int, timeout_s: float, random_support: bool,
                   seed: int) -> StressReport:
    """:func:`consistency_stress` on the strategy's sparse path."""
    strategy = spec.strategy
    if not strategy.has_sparse_path:
        raise ValueError(f"strategy {spec.name!r} has no sparse path (read_sparse/update_sparse)")
    state = strategy.make_state(np.zeros(n_params), threads, **spec.kwargs)
    fixed = np.arange(0, n_params, SPARSE_STRIDE, dtype=np.int64)
    n_fixed = 0 if random_support else fixed.size
    size = RANDOM_SUPPORT if random_support else fixed.size
    supports = [fixed.copy() if not random_support else np.zeros(size, np.int64)
                for _ in range(threads)]
    values = np.full(size, GRADIENT)
    tallies, step_sums, ulps, seen = _probe_records(step_spec, threads, updates)
    coordinate_steps = np.zeros((threads, n_params), np.float64)
    rngs = thread_states(seed, threads)
    draws = [np.zeros(RANDOM_SUPPORT, np.int64) for _ in range(threads)]
    marks = [np.zeros(n_params, np.bool_) for _ in range(threads)]
    kernels = {"read_sparse": strategy.read_sparse, "update_sparse": strategy.update_sparse,
               "retire": strategy.retire, "rule": step_spec.rule.step}

    def arguments(rule_state: tuple, tid: int, control: np.ndarray) -> tuple:
        return (rule_state, state, tid, control, supports[tid], n_fixed, values, STEP,
                hold_spins, strategy.consistent, ulps, seen, tallies, step_sums,
                rngs[tid], draws[tid], marks[tid], coordinate_steps)

    control = _run_probe(_sparse_probe_worker, kernels, arguments, step_spec, threads, updates,
                         timeout_s, f"{spec.label} (sparse)")
    expected = np.zeros(n_params)
    if random_support:
        # a MERGED gradient was averaged into a round of all the threads' gradients (SYNC:
        # the round applies their mean), so each counts 1/threads of its step
        expected = -GRADIENT * coordinate_steps.sum(axis=0) / (threads if _merged(tallies) else 1)
    elif ulps >= 0:  # the closed form (constant rule)
        expected[fixed] = -UPDATE_VALUE * updates
    else:
        expected[fixed] = -GRADIENT * float(step_sums[:, 0].sum())
    return _report(spec, step_spec, threads, updates, tallies, step_sums, control, state,
                   sparse="random" if random_support else "fixed", expected_sparse=expected)


# -- the conformance check ------------------------------------------------------------
