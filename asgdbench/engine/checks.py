"""The conformance check of a strategy (`asgdbench check SPEC`): one line per property.

:func:`check_strategy` holds a strategy to the harness's contract and to what it declares:
the exact update budget, applied + dropped = computed, and, where it claims consistency, the
consistency stress of :mod:`asgdbench.engine.consistency` (no torn read, no read of another
version, no lost update), on its dense and, if it has one, its sparse path; bounded memory,
clean stops, a readable final vector. :class:`Check` is one property's line, shared with the
step-rule and workload checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asgdbench.engine.consistency import consistency_stress
from asgdbench.plugins.step_rules import DEFAULT_STEP, StepSpec, parse_step_spec
from asgdbench.plugins.strategies import StrategySpec, parse_spec


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
                                stress.no_lost_update,
                                f"final component {float(stress.final_params[0])!r}, expected "
                                f"{float(stress.expected_params()[0])!r} (exact: "
                                f"{stress.final_is_exact})"))
        else:
            checks.append(Check("no lost update (final vector is -c times the applied steps)",
                                stress.no_lost_update,
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
        exact = stress.no_lost_update
        lost = int(np.count_nonzero(stress.final_params != stress.expected_params()))
        detail = f"{lost} coordinates differ from what the applied updates imply"
        if lost and exact:
            detail += ", by rounding only (a merged mean over m threads, or a rule's steps)"
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
