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
                         closed_form, seen, tallies, step_sums, rng, draws, marks,
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
            if _disagrees_on(params, support, n_support, first):
                tallies[tid, CHANGED_WHILE_HELD] += 1
        outcome, staleness, attempts, step = update_sparse(state, tid, token, support, values,
                                                           n_support, lr, control, rule,
                                                           rule_state)
        if outcome == STOP:
            break
        tallies[tid, COMPUTED] += 1
        if outcome == APPLIED:
            tallies[tid, APPLIED_COUNT] += 1
            step_sums[tid, 0] += step
        elif outcome == DROPPED:
            tallies[tid, DROPPED_COUNT] += 1
        if n_fixed == 0 and (outcome == APPLIED or outcome == MERGED):
            for k in range(n_support):  # a merged gradient's share is set by _report's caller
                coordinate_steps[tid, support[k]] += step
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
    sparse: str = ""
    """The sparse path's mode: "" (dense), "fixed" (support S) or "random" (a support per update)."""
    expected_sparse: np.ndarray | None = field(default=None, repr=False)
    """Sparse runs: the final vector the applied updates imply (0 off the supports)."""

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
    def final_within_rounding(self) -> bool:
        """Exact, or off by at most one ulp per update (a rule whose steps are not powers of two)."""
        expected = self.expected_params()
        bound = self.updates * np.spacing(np.abs(expected))
        if self.sparse:  # 0 off the supports stays exactly 0
            bound = np.where(expected == 0, 0.0, bound)
        return bool(np.all(np.abs(self.final_params - expected) <= bound))

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
    _run_stress_threads(probe_worker, lambda tid: arguments(rule_state, tid, control), control,
                        threads, f"{spec.label} with {threads} threads did not finish "
                        f"{updates} updates within {timeout_s:g} s", timeout_s)
    return _report(spec, step_spec, threads, updates, tallies, step_sums, control, state)


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
    tallies = np.zeros((threads, TALLY_COLUMNS), np.int64)
    step_sums = np.zeros((threads, TALLY_COLUMNS), np.float64)
    coordinate_steps = np.zeros((threads, n_params), np.float64)
    closed_form = step_spec.name == DEFAULT_STEP
    seen = np.full(0 if closed_form else updates + 1, np.nan)
    rngs = thread_states(seed, threads)
    draws = [np.zeros(RANDOM_SUPPORT, np.int64) for _ in range(threads)]
    marks = [np.zeros(n_params, np.bool_) for _ in range(threads)]
    kernels = {"read_sparse": strategy.read_sparse, "update_sparse": strategy.update_sparse,
               "retire": strategy.retire, "rule": step_spec.rule.step}

    def arguments(rule_state: tuple, tid: int, control: np.ndarray) -> tuple:
        return (rule_state, state, tid, control, supports[tid], n_fixed, values, STEP,
                hold_spins, strategy.consistent, closed_form, seen, tallies, step_sums,
                rngs[tid], draws[tid], marks[tid], coordinate_steps)

    compile_control = np.zeros(CONTROL_CELLS, np.int64)
    compile_control[STOP_FLAG] = 1
    compile_arguments = arguments(step_spec.make_state(threads), 0, compile_control)
    probe_worker = specialize(_sparse_probe_worker, kernels, compile_arguments)
    probe_worker(*compile_arguments)

    rule_state = step_spec.make_state(threads)
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = updates
    _run_stress_threads(probe_worker, lambda tid: arguments(rule_state, tid, control), control,
                        threads, f"{spec.label} (sparse) with {threads} threads did not finish "
                        f"{updates} updates within {timeout_s:g} s", timeout_s)
    expected = np.zeros(n_params)
    if random_support:
        # a MERGED gradient was averaged into a round of all the threads' gradients (SYNC:
        # the round applies their mean), so each counts 1/threads of its step
        merged = int(tallies[:, COMPUTED].sum() - tallies[:, APPLIED_COUNT].sum()
                     - tallies[:, DROPPED_COUNT].sum())
        expected = -GRADIENT * coordinate_steps.sum(axis=0) / (threads if merged else 1)
    elif closed_form:
        expected[fixed] = -UPDATE_VALUE * updates
    else:
        expected[fixed] = -GRADIENT * float(step_sums[:, 0].sum())
    return _report(spec, step_spec, threads, updates, tallies, step_sums, control, state,
                   sparse="random" if random_support else "fixed", expected_sparse=expected)


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
    checked against the sum of the applied steps (see the module docstring). A strategy
    with a sparse path is checked on it too (:func:`check_sparse_path`).
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
    checks += check_sparse_path(spec, threads, updates, watchdog_s, step)
    return checks


def check_sparse_path(spec: StrategySpec, threads: int, updates: int, watchdog_s: float,
                      step: StepSpec) -> list[Check]:
    """:func:`check_strategy`'s checks of the sparse path (``read_sparse``/``update_sparse``),
    on ``probe-sparse`` through the runner and on the sparse stress, both supports; one INFO
    line for a strategy without one (it is refused on sparse workloads)."""
    from asgdbench.engine.runner import run

    strategy = spec.strategy
    if not strategy.has_sparse_path:
        return [Check("sparse path", None, "none: sparse workloads refuse this strategy")]
    checks: list[Check] = []
    budget = run("probe-sparse", spec, threads, step=step, max_updates=updates,
                 target_loss=None, max_time=watchdog_s, dtype="float64")
    if budget.status == "error":
        return [Check("sparse: run completes", False, budget.error or "error")]
    checks.append(Check(
        "sparse: exact update budget",
        budget.status == "budget" and budget.updates_applied == updates,
        f"{budget.updates_applied} updates applied for a budget of {updates} (run ended by "
        f"{budget.status})"))
    off = budget.evaluation["written_off_support"]
    checks.append(Check("sparse: nothing written off the support", off == 0,
                        f"{off} coordinates off the support changed"))
    for random_support in (False, True):
        mode = "random support" if random_support else "fixed support"
        try:
            stress = consistency_stress(spec, threads, updates, timeout_s=watchdog_s, step=step,
                                        sparse=True, random_support=random_support)
        except AssertionError as error:
            checks.append(Check(f"sparse ({mode}): stress run ends at its budget", False,
                                str(error)))
            return checks
        exact = stress.final_is_exact if step.name == DEFAULT_STEP \
            else stress.final_within_rounding
        lost = int(np.count_nonzero(stress.final_params != stress.expected_params()))
        detail = f"{lost} coordinates differ from what the applied updates imply"
        torn = (f"{stress.torn_reads} torn reads, {stress.changed_while_held} rewritten while "
                f"held, {stress.wrong_versions} of another version")
        if strategy.consistent:
            checks.append(Check(f"sparse ({mode}): no lost update", exact, detail))
            if not random_support:
                checks.append(Check(f"sparse ({mode}): reads are whole versions",
                                    stress.clean, torn))
        else:
            checks.append(Check(f"sparse ({mode}): lost updates, torn reads (not consistent: "
                                "reported only)", None,
                                detail + ("" if random_support else f"; {torn}")))
    return checks
