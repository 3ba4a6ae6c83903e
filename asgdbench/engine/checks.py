"""Checks any strategy can be held to, for this project's tests and for plugin authors' own.

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
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

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
    NOT_READ,
    STOP,
    STOP_FLAG,
)

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


@njit(nogil=True)  # the template: consistency_stress runs it specialised, cached on disk
def _probe_worker(read, update, retire, rule, rule_state, state, tid, control, grad, lr,
                  hold_spins, check_version, closed_form, seen, tallies, step_sums):
    """A worker loop whose gradient is a check of the vector it was given.

    ``closed_form``: version v is ``-lr * c * v`` (constant rule); else every
    read of version v must equal the first one recorded in ``seen[v]`` (NaN: none yet).
    """
    while load(control, STOP_FLAG, "monotonic") == 0:
        params, token = read(state, tid, control)
        if token == NOT_READ:
            break
        first = params[0]
        if _disagrees(params, first):
            tallies[tid, TORN] += 1
        elif check_version and closed_form and first != -UPDATE_VALUE * token:
            tallies[tid, WRONG_VERSION] += 1
        elif check_version and not closed_form and 0 <= token < seen.shape[0]:
            recorded = seen[token]
            if np.isnan(recorded):
                seen[token] = first
            elif recorded != first:
                tallies[tid, WRONG_VERSION] += 1
        for _ in range(hold_spins):
            cpu_pause()
        if _disagrees(params, first):
            tallies[tid, CHANGED_WHILE_HELD] += 1
        outcome, staleness, attempts, step = update(state, tid, token, grad, lr, control, rule,
                                                    rule_state)
        if outcome == STOP:
            break
        tallies[tid, COMPUTED] += 1
        if outcome == APPLIED:
            tallies[tid, APPLIED_COUNT] += 1
            step_sums[tid, 0] += step
        elif outcome == DROPPED:
            tallies[tid, DROPPED_COUNT] += 1
        tallies[tid, MAX_ATTEMPTS] = max(tallies[tid, MAX_ATTEMPTS], attempts)
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

    def expected_params(self, updates: int | None = None) -> np.ndarray:
        """The exact vector after ``updates`` updates (default: the budget).

        With a step rule other than constant, only the budget's: ``-c`` times the steps' sum.
        """
        if self.step != DEFAULT_STEP:
            return np.full(self.final_params.size, -GRADIENT * self.step_sum)
        n = self.updates if updates is None else updates
        return np.full(self.final_params.size, -UPDATE_VALUE * n)

    @property
    def final_is_exact(self) -> bool:
        """The final vector is the closed form after exactly the budget: no update lost or torn."""
        return bool(np.array_equal(self.final_params, self.expected_params()))

    @property
    def final_within_rounding(self) -> bool:
        """Exact, or off by at most one ulp per update (a rule whose steps are not powers of two)."""
        expected = self.expected_params()
        bound = self.updates * np.spacing(np.abs(expected))
        return bool(np.all(np.abs(self.final_params - expected) <= bound))

    @property
    def clean(self) -> bool:
        """Nothing torn, rewritten while held, of the wrong version, or flagged as an error."""
        return (self.torn_reads, self.wrong_versions, self.changed_while_held, self.error) == \
            (0, 0, 0, 0)


def consistency_stress(spec: str | StrategySpec, threads: int, updates: int, *,
                       n_params: int = 512, hold_spins: int = 64,
                       timeout_s: float = 120.0,
                       step: str | StepSpec | None = None) -> StressReport:
    """Run ``spec`` with ``threads`` threads until exactly ``updates`` updates are applied.

    ``step`` is the step rule (default ``constant``). Raises AssertionError if
    the threads do not finish within ``timeout_s`` (a deadlock or livelock);
    they are told to stop first.
    """
    spec = parse_spec(spec)
    step_spec = parse_step_spec(step)
    strategy = spec.strategy
    state = strategy.make_state(np.zeros(n_params), threads, **spec.kwargs)
    grad = np.full(n_params, GRADIENT)
    tallies = np.zeros((threads, TALLY_COLUMNS), np.int64)
    step_sums = np.zeros((threads, TALLY_COLUMNS), np.float64)
    closed_form = step_spec.name == DEFAULT_STEP
    seen = np.full(0 if closed_form else updates + 1, np.nan)
    kernels = {"read": strategy.read, "update": strategy.update, "retire": strategy.retire,
               "rule": step_spec.rule.step}
    check_version = strategy.consistent

    def arguments(rule_state: tuple, tid: int, control: np.ndarray) -> tuple:
        return (rule_state, state, tid, control, grad, STEP, hold_spins, check_version,
                closed_form, seen, tallies, step_sums)

    compile_control = np.zeros(CONTROL_CELLS, np.int64)
    compile_control[STOP_FLAG] = 1  # runs the compiled loop without doing anything
    compile_arguments = arguments(step_spec.make_state(threads), 0, compile_control)
    probe_worker = specialize(_probe_worker, kernels, compile_arguments)  # compiled or cached
    probe_worker(*compile_arguments)

    rule_state = step_spec.make_state(threads)
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = updates
    workers = [threading.Thread(target=probe_worker, daemon=True, name=f"stress-{tid}",
                                args=arguments(rule_state, tid, control))
               for tid in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    if any(worker.is_alive() for worker in workers):
        control[STOP_FLAG] = 1
        deadline = time.monotonic() + 10.0
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        raise AssertionError(f"{spec.label} with {threads} threads did not finish "
                             f"{updates} updates within {timeout_s:g} s")
    totals = tallies.sum(axis=0)
    return StressReport(
        spec=spec.label, threads=threads, updates=updates,
        computed=int(totals[COMPUTED]), applied=int(totals[APPLIED_COUNT]),
        dropped=int(totals[DROPPED_COUNT]), torn_reads=int(totals[TORN]),
        wrong_versions=int(totals[WRONG_VERSION]),
        changed_while_held=int(totals[CHANGED_WHILE_HELD]),
        max_attempts=int(tallies[:, MAX_ATTEMPTS].max()),
        error=int(control[ERROR]),
        final_params=np.array(strategy.final_params(state), copy=True), state=state,
        step=step_spec.label, step_sum=float(step_sums[:, 0].sum()),
    )


# -- the conformance check ------------------------------------------------------------

@dataclass
class Check:
    """One property of a plugin (strategy, step rule, workload): held (``passed``), broken, or
    only reported (``passed`` None). :mod:`.step_rule_checks` and :mod:`.workload_checks` hold
    the other plugin kinds to theirs."""

    name: str
    passed: bool | None
    detail: str

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "INFO"}[self.passed]
        return f"{verdict}  {self.name}: {self.detail}"


def check_strategy(spec: str | StrategySpec, threads: int = 16, updates: int = 5_000,
                   stops: int = 10, watchdog_s: float = 60.0,
                   step: str | StepSpec | None = None) -> list[Check]:
    """Hold a strategy to the harness's contract and to what it declares it promises.

    Runs on the consistency probe (float64, exact arithmetic) with ``threads``
    threads, whatever the machine's cores: an exact update budget; applied +
    dropped == computed; no lost update, no torn read and no read of another
    version than its token names (if it declares itself ``consistent``; torn
    reads are reported otherwise); no more parameter vectors than
    ``max_param_vectors``; a clean stop from wherever ``stops`` short timed runs
    happen to be; a readable final vector. Every run uses the step rule
    ``step`` (default ``constant``); with another rule the final vector is
    checked against the sum of the applied steps (see the module docstring).
    """
    from asgdbench.engine.runner import run  # the runner imports this module's neighbours

    spec = parse_spec(spec)
    step = parse_step_spec(step)
    strategy = spec.strategy
    threads = min(threads, strategy.max_threads or threads)
    checks: list[Check] = []

    # budgets sized to what the strategy does in a few seconds here, so slow ones (SYNC) stay quick
    pace = run("probe", spec, threads, step=step, max_time=0.5, target_loss=None,
               dtype="float64", stop_grace_s=watchdog_s / 4)
    updates = int(min(updates, max(100, pace.updates_per_s * 3)))
    budget = run("probe", spec, threads, step=step, max_updates=updates, target_loss=None,
                 max_time=watchdog_s, dtype="float64")
    if budget.status == "error":
        checks.append(Check("run completes", False, budget.error or "error"))
        return checks
    checks.append(Check(
        "exact update budget", budget.status == "budget" and budget.updates_applied == updates,
        f"{budget.updates_applied} updates applied for a budget of {updates} "
        f"(run ended by {budget.status})"))
    computed = budget.updates_applied + budget.gradients_dropped
    merged = budget.gradients_computed - computed
    checks.append(Check(
        "applied + dropped == computed", merged == 0 or (merged > 0 and budget.status == "budget"
                                                        and budget.gradients_dropped == 0),
        f"{budget.updates_applied} + {budget.gradients_dropped} vs {budget.gradients_computed} "
        "computed" + (" (the rest merged into rounds)" if merged > 0 else "")))

    try:
        stress = consistency_stress(spec, threads, updates, timeout_s=watchdog_s, step=step)
    except AssertionError as error:  # it never stopped: report it, and stop checking here
        checks.append(Check("stress run ends at its budget", False, str(error)))
        return checks
    torn = f"{stress.torn_reads} torn reads, {stress.changed_while_held} vectors rewritten while held"
    if stress.error:
        checks.append(Check("no broken invariant", False,
                            "the strategy set the ERROR cell (e.g. its memory pool ran out)"))
    if strategy.consistent:
        checks.append(Check("no torn read, no vector rewritten while held",
                            stress.torn_reads == 0 and stress.changed_while_held == 0, torn))
        checks.append(Check("every read is the version its token names",
                            stress.wrong_versions == 0,
                            f"{stress.wrong_versions} reads of another version"))
        if step.name == DEFAULT_STEP:
            checks.append(Check("no lost update (final vector is the closed form)",
                                stress.final_is_exact,
                                f"final component {float(stress.final_params[0])!r}, expected "
                                f"{float(stress.expected_params()[0])!r}"))
        else:
            checks.append(Check("no lost update (final vector is -c times the applied steps)",
                                stress.final_within_rounding,
                                f"final component {float(stress.final_params[0])!r}, expected "
                                f"{float(stress.expected_params()[0])!r} (exact: "
                                f"{stress.final_is_exact})"))
    else:
        checks.append(Check("torn reads (not consistent: reported only)", None, torn))

    bound = strategy.max_param_vectors(threads)
    checks.append(Check("bounded memory", budget.peak_param_vectors <= bound,
                        f"peak {budget.peak_param_vectors} parameter vectors, declared bound "
                        f"{bound}"))

    statuses = []
    for k in range(stops):
        stopped = run("probe", spec, threads, step=step, max_time=0.02 + 0.03 * (k % 4),
                      target_loss=None, dtype="float64", stop_grace_s=watchdog_s / 4)
        statuses.append(stopped.status)
    checks.append(Check("clean stop from any state", set(statuses) <= {"timeout", "budget"},
                        f"{stops} short timed runs ended as {', '.join(sorted(set(statuses)))}"))

    final = np.asarray(strategy.final_params(stress.state))
    readable = final.shape == stress.final_params.shape and bool(np.all(np.isfinite(final)))
    checks.append(Check("final vector readable", readable,
                        f"shape {final.shape}, finite: {bool(np.all(np.isfinite(final)))}"))
    return checks
