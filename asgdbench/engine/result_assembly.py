"""A finished run's record: how it ended, what it trained, and its declared telemetry.

:func:`assemble_result` reads what :class:`~asgdbench.engine.threaded_run.ThreadedRun` leaves
(the monitor's verdict, the strategy's state, the workers' counters) once every thread has
ended or been given up as stuck. The telemetry fields are measured by their declarations
(:func:`asgdbench.engine.telemetry.measure`); this module decides the outcome.
"""

from __future__ import annotations

from typing import Any

from asgdbench.engine.machine import environment
from asgdbench.engine.monitor import DIVERGED, EVENT_TIME_NS, EVENT_UPDATES, REACHED
from asgdbench.engine.run_result import RunResult
from asgdbench.engine.statistics import downsample_trace
from asgdbench.engine.telemetry import RunEnd, measure
from asgdbench.plugins.step_rules import available_step_rules, step_rule_source
from asgdbench.plugins.strategies import available_strategies, strategy_source
from asgdbench.plugins.workloads import workload_source


def run_status(failure: str | None, event: int, stopped_by: str | None) -> str:
    """How the run ended: error, diverged, converged, timeout, or budget (updates or strategy)."""
    if failure is not None:
        return "error"
    if event == DIVERGED:
        return "diverged"
    if event == REACHED:
        return "converged"
    if stopped_by == "timeout":
        return "timeout"
    return "budget"


def assemble_result(run: Any, stopped_by: str | None, start_ns: int, end_ns: int,
                    initial_loss: float, compile_s: float) -> RunResult:
    """The record of ``run`` (a :class:`~asgdbench.engine.threaded_run.ThreadedRun` whose
    threads have ended), started at ``start_ns`` and ended at ``end_ns``."""
    config, strategy, monitor = run.config, run.spec.strategy, run.monitor
    reached = monitor.event == REACHED
    failure = run.failure()
    wall_s = (end_ns - start_ns) / 1e9
    if run.stuck_threads:  # the state is still being written: report nothing read from it
        final_params, evaluation, inspected = None, {}, {}
    else:
        final_params = strategy.final_params(run.state)
        evaluation = run.workload.evaluate(final_params)
        inspected = strategy.inspect(run.state)
    overrun_s = None
    if stopped_by == "timeout" and run.rule.max_time is not None:
        overrun_s = wall_s - run.rule.max_time
    end = RunEnd(telemetry=run.telemetry, wall_s=wall_s, threads=config.threads, lr=config.lr,
                 strategy=strategy, state=run.state,
                 vector_bytes=run.workload.n_params * run.workload.dtype.itemsize,
                 live=run.live.summary(wall_s), step_spec=run.step_spec,
                 rule_state=run.rule_state, monitor_lost_entries=monitor.lost_entries,
                 n_params=run.workload.n_params)
    return RunResult(
        config=config,
        status=run_status(failure, monitor.event, stopped_by),
        wall_s=wall_s,
        time_to_target_s=(monitor.cells[EVENT_TIME_NS] - start_ns) / 1e9 if reached else None,
        steps_to_target=int(monitor.cells[EVENT_UPDATES]) if reached else None,
        loss_trace=downsample_trace(run.trace),
        initial_loss=initial_loss,
        final_loss=monitor.smoothed_loss,
        test_loss=evaluation.get("test_loss"),
        test_accuracy=evaluation.get("test_accuracy"),
        compile_s=compile_s,
        evaluation=evaluation,
        strategy_state=inspected,
        environment=environment(),
        final_params=None if final_params is None else final_params.copy(),
        error=failure,
        stuck_threads=run.stuck_threads,
        overrun_s=overrun_s,
        strategy_source=(strategy_source(run.spec.name)
                         if available_strategies().get(run.spec.name) is strategy else {}),
        workload_source=workload_source(run.workload.name),
        step_source=(step_rule_source(run.step_spec.name)
                     if available_step_rules().get(run.step_spec.name) is run.step_spec.rule
                     else {}),
        **measure(end),
    )
