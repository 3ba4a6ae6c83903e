"""A short report of one run, for ``asgdbench run``: how it ended and what it measured."""

from __future__ import annotations

import math

from tabulate import tabulate

from asgdbench.engine.run_result import RunResult
from asgdbench.engine.telemetry import byte_size, fixed, percent
from asgdbench.study.rows import _blas_label
from asgdbench.study.table_format import MISSING, NOT_CONVERGED, _context_value, _number


def describe_run(result: RunResult) -> str:
    """A short report of one run, for ``asgdbench run``."""
    config = result.config
    title = (f"{config.workload}  {config.label}  threads={config.threads}  "
             f"lr={config.lr:g}  batch={config.batch_size}  seed={config.seed}")
    if result.converged:
        to_target = (f"{_number(result.time_to_target_s)} s ({result.steps_to_target:,} updates), "
                     f"when the smoothed loss first reached {_context_value(config.target_loss)}")
    else:
        to_target = f"{NOT_CONVERGED} (target loss {_context_value(config.target_loss)})"
    diverged = result.status == "diverged"
    status = f"{result.status} after {_number(result.wall_s)} s"
    if result.overrun_s is not None:
        status += f" ({_number(result.overrun_s)} s past the time limit, for the last step to end)"
    lines = [
        ("status", status),
        *([("error", result.error)] if result.error else []),
        ("time to target", to_target),
        ("updates/s", f"{result.updates_per_s:,.0f} ({result.updates_applied:,} updates)"),
        ("staleness", _staleness_shape(result.staleness)),
        ("step", _step_shape(result)),
        ("CAS failures", MISSING if result.cas is None else
         f"{percent(result.cas['failure_rate'])} of {result.cas['total_attempts']:,} attempts"),
        ("dropped", percent(result.gradients_dropped / result.gradients_computed
                            if result.gradients_computed else None)),
        ("peak params", f"{byte_size(result.peak_param_bytes)} ({result.peak_param_vectors} "
                        f"vector{'s' if result.peak_param_vectors != 1 else ''})"),
        ("final loss", _final_loss(result)),
        ("test accuracy", "meaningless: the run diverged" if diverged else
         fixed("{:.3f}")(result.test_accuracy)),
        ("BLAS", _blas_label(result.environment) or MISSING),
    ]
    # whatever else the workload measured (the probe: torn reads) and the strategy reported
    extras = {k: v for k, v in result.evaluation.items() if k not in ("test_loss", "test_accuracy")}
    lines += [(name.replace("_", " "), str(value))
              for name, value in {**extras, **result.strategy_state}.items()]
    return f"{title}\n{tabulate(lines, tablefmt='plain', disable_numparse=True)}"


def _final_loss(result: RunResult) -> str:
    """The smoothed loss at the end, said to be the one the target is judged on."""
    loss = result.final_loss
    if loss is None or not math.isfinite(loss):
        return "not finite (the run diverged)" if result.status == "diverged" else MISSING
    what = "smoothed: the mean of the last minibatch losses, the loss the target is judged on"
    if result.converged:
        what += "; it kept moving after reaching the target"
    return f"{loss:.4g} ({what})"


def _step_shape(result: RunResult) -> str:
    """The step rule and what it did: the mean step and the range of step / lr."""
    steps = result.step_rule
    if not steps or steps.get("mean_step") is None:
        step = result.config.step.label
        return f"{step} (no update applied)" if steps else step
    return (f"{result.config.step}: mean {steps['mean_step']:.4g} = {steps['mean_factor']:.3f} "
            f"x lr, factor {steps['factor_min']:.3g} to {steps['factor_max']:.3g}")


def _staleness_shape(staleness: dict) -> str:
    """Where the staleness histogram's mass is: the share at 0 and its tail."""
    if staleness.get("mean") is None:
        return MISSING
    at_zero = staleness["histogram"].get("0", 0) / staleness["count"]
    tail = f", p99.9 {staleness['p999']}" if staleness.get("p999") is not None else ""
    return (f"{100 * at_zero:.1f}% at 0, mean {staleness['mean']:.2f}, p99 {staleness['p99']}"
            f"{tail}, max {staleness['max']} (updates by others between read and update)")
