"""The threads of one run: build the shared state, compile, start, watch, stop.

:class:`ThreadedRun` owns everything around the strategy between the run's plan and its
record: the shared state, compiling every kernel before the clock starts, releasing all
threads from one start barrier, watching the loss log for the stop rules, and joining the
threads within a grace period. :mod:`asgdbench.engine.result_assembly` turns what it leaves
into the run's record; :mod:`asgdbench.engine.runner` plans a run and calls it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba.core.errors import NumbaError

from asgdbench.engine.interrupts import raise_if_interrupted
from asgdbench.engine.monitor import (
    DIVERGED,
    FILLED,
    NEXT_ENTRY,
    REACHED,
    LiveVectorSampler,
    LossMonitor,
    StopRule,
)
from asgdbench.engine.result_assembly import assemble_result
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.engine.worker import (
    LossLog,
    ThreadTelemetry,
    compiled_sparse_worker_loop,
    compiled_worker_loop,
)
from asgdbench.errors import PluginError
from asgdbench.plugins.registry import describe_source
from asgdbench.plugins.step_rules import (
    StepSpec,
    available_step_rules,
    check_rule_state,
    step_rule_source,
)
from asgdbench.plugins.strategies import StrategySpec, available_strategies, strategy_source
from asgdbench.plugins.workloads import Workload
from asgdbench.primitives.memory import line_private_zeros
from asgdbench.primitives.protocol import CONTROL_CELLS, ERROR, GO, MAX_UPDATES, READY, STOP_FLAG
from asgdbench.primitives.rng import thread_states

UNLIMITED_UPDATES = 1 << 62


@dataclass
class _ThreadSetup:
    """Everything one worker thread passes to :func:`worker_loop` besides shared state.

    A sparse run gives each thread ``support`` and ``values`` buffers of
    ``max_support(batch_size)`` elements instead of a whole gradient vector.
    """

    grad: np.ndarray
    rows: np.ndarray
    work: tuple
    rng: np.ndarray
    timespec: np.ndarray
    support: np.ndarray | None = None
    values: np.ndarray | None = None


class ThreadedRun:
    """The mechanics of one run: state, threads, monitoring; the result is assembled by
    :func:`asgdbench.engine.result_assembly.assemble_result`."""

    def __init__(self, workload: Workload, spec: StrategySpec, step_spec: StepSpec,
                 config: RunConfig, rule: StopRule, poll_interval: float,
                 stop_grace_s: float) -> None:
        self.workload, self.spec, self.config, self.rule = workload, spec, config, rule
        self.step_spec = step_spec
        self.rule_state = check_rule_state(step_spec.make_state(config.threads),
                                           step_spec.name)
        self.poll_interval, self.stop_grace_s = poll_interval, stop_grace_s
        strategy = spec.strategy
        self.sparse = workload.sparse
        if self.sparse:
            self.kernels = {"read_sparse": strategy.read_sparse,
                            "update_sparse": strategy.update_sparse, "retire": strategy.retire,
                            "support": workload.support, "gradient": workload.gradient,
                            "rule": step_spec.rule.step}
        else:
            self.kernels = {"read": strategy.read, "update": strategy.update,
                            "retire": strategy.retire, "gradient": workload.gradient,
                            "rule": step_spec.rule.step}
        self.loop: Any = None  # the compiled worker loop, once _compile has run
        self.init_params = workload.init_params(config.seed)
        self.state = strategy.make_state(self.init_params, config.threads, **spec.kwargs)
        rngs = thread_states(config.seed, config.threads)
        self.setups = [self._setup(rngs[tid]) for tid in range(config.threads)]
        self.lr = workload.dtype.type(config.lr)  # so the update loops stay in the model's dtype
        self.control = np.zeros(CONTROL_CELLS, np.int64)
        self.control[MAX_UPDATES] = min(config.max_updates or UNLIMITED_UPDATES,
                                        strategy.max_updates or UNLIMITED_UPDATES)
        self.log = LossLog.allocate()
        self.telemetry = ThreadTelemetry.allocate(config.threads)
        self.monitor = LossMonitor.for_window(rule.window)
        self.live = LiveVectorSampler.empty()
        self.trace: list[tuple[float, int, float]] = []
        self.errors: list[BaseException] = []
        self.stuck_threads = 0

    def _setup(self, rng: np.ndarray) -> _ThreadSetup:
        """One thread's scratch, written on every update: each array on cache lines of its
        own (:func:`line_private_zeros`), so the harness adds no false sharing to a run."""
        workload, batch = self.workload, self.config.batch_size
        rows = line_private_zeros(batch, np.int64)
        work = workload.make_workspace(batch)
        timespec = line_private_zeros(2, np.int64)
        if not self.sparse:
            return _ThreadSetup(line_private_zeros(workload.n_params, workload.dtype), rows,
                                work, rng, timespec)
        size = int(workload.max_support(batch))
        return _ThreadSetup(np.zeros(0, workload.dtype), rows, work, rng, timespec,
                            support=line_private_zeros(size, np.int64),
                            values=line_private_zeros(size, workload.dtype))

    # -- phases ------------------------------------------------------------------

    def execute(self) -> RunResult:
        compile_s = self._compile()
        raise_if_interrupted()
        initial_loss = float(self.workload.training_loss(self.init_params))
        limit = self.rule.divergence_limit(initial_loss)
        threads = [threading.Thread(target=self._thread_main, args=(tid, self.control),
                                    name=f"asgdbench-worker-{tid}", daemon=True)
                   for tid in range(self.config.threads)]
        try:  # from the first start on: a Ctrl-C or a failed start still stops the workers
            for thread in threads:
                thread.start()
            start_ns = self._release(threads)
            stopped_by = self._watch(threads, start_ns, limit)
        except BaseException:  # Ctrl-C included: stop the workers before leaving
            self.control[STOP_FLAG] = 1
            self._join(threads)
            raise
        self.stuck_threads = self._join(threads)
        end_ns = time.monotonic_ns()
        before = -1
        while self.monitor.cells[NEXT_ENTRY] != before:  # a scan reads at most one ring
            before = int(self.monitor.cells[NEXT_ENTRY])
            self._scan(limit, start_ns)
        return assemble_result(self, stopped_by, start_ns, end_ns, initial_loss, compile_s)

    def _join(self, threads: list[threading.Thread]) -> int:
        """Join every thread within the grace period after the stop flag; how many are stuck."""
        deadline = time.monotonic() + self.stop_grace_s
        started = [thread for thread in threads if thread.ident is not None]
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in started)

    def failure(self) -> str | None:
        """Why the run is invalid, or None."""
        if self.stuck_threads:
            return (f"{self.stuck_threads} of {self.config.threads} worker threads did not stop "
                    f"within {self.stop_grace_s:g} s of the stop flag (stuck in strategy "
                    f"{self.spec.label!r}?); they still hold their cores")
        if self.errors:
            return f"a worker thread failed: {self.errors[0]!r}"
        if self.control[ERROR]:
            return (f"strategy {self.spec.label!r} broke an invariant (it set the ERROR cell); "
                    "the run is invalid")
        return None

    def _compile(self) -> float:
        """Compile (or load from the cache) every kernel before the clock starts."""
        begin = time.perf_counter()
        control = np.zeros_like(self.control)
        control[STOP_FLAG] = control[GO] = 1
        try:
            self.loop = self.compile_loop(control)
        except (NumbaError, TypeError) as error:  # kernels that do not type-check
            raise self._not_compiling(error) from error
        self._thread_main(0, control)  # the loop ends at once: the stop flag is up
        if self.errors:
            error = self.errors[0]
            if isinstance(error, (NumbaError, TypeError)):
                raise self._not_compiling(error) from error
            raise error
        self.monitor.scan(self.log.arrays(), math.inf, math.inf)  # compiles; the log is empty
        return time.perf_counter() - begin

    def compile_loop(self, control: np.ndarray, *, cache: bool = True) -> Any:
        """The worker loop specialised for this run's kernels (see :func:`worker_loop_for`)."""
        compile_for = compiled_sparse_worker_loop if self.sparse else compiled_worker_loop
        return compile_for(self.kernels, self._loop_args(0, control), cache=cache)

    def _not_compiling(self, error: BaseException) -> PluginError:
        source = describe_source(strategy_source(self.spec.name)) \
            if self.spec.name in available_strategies() else "an unregistered strategy"
        step_source = describe_source(step_rule_source(self.step_spec.name)) \
            if self.step_spec.name in available_step_rules() else "unregistered"
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        return PluginError(f"strategy {self.spec.label!r} ({source}), step rule "
                           f"{self.step_spec.label!r} ({step_source}) or workload "
                           f"{self.workload.name!r}: kernels do not compile: {first.strip()}")

    def _loop_args(self, tid: int, control: np.ndarray) -> tuple:
        """The compiled loop's arguments for thread ``tid`` (the kernels are bound in it)."""
        setup = self.setups[tid]
        if self.sparse:
            return (self.state, tid, self.workload.train_data, self.workload.n_samples,
                    setup.work, setup.support, setup.values, setup.rows, setup.rng, self.lr,
                    self.rule_state, control, self.log.arrays(), self.telemetry.arrays(),
                    setup.timespec)
        return (self.state, tid, self.workload.train_data, self.workload.n_samples, setup.work,
                setup.grad, setup.rows, setup.rng, self.lr, self.rule_state, control,
                self.log.arrays(), self.telemetry.arrays(), setup.timespec)

    def _thread_main(self, tid: int, control: np.ndarray) -> None:
        try:
            self.loop(*self._loop_args(tid, control))
        except BaseException as error:  # reported by the main thread
            self.errors.append(error)
            control[STOP_FLAG] = 1

    def _release(self, threads: list[threading.Thread]) -> int:
        """Open the start barrier once every thread waits at it; returns the start time."""
        while self.control[READY] < len(threads):
            if self.errors or not any(t.is_alive() for t in threads):
                break
            time.sleep(0.0002)
        start_ns = time.monotonic_ns()
        self.control[GO] = 1
        return start_ns

    def _watch(self, threads: list[threading.Thread], start_ns: int, limit: float) -> str | None:
        """Poll the log until the threads end or the stop flag is up; the rule that fired, if any."""
        stopped_by = None
        self._sample_live(0.0)
        while any(t.is_alive() for t in threads) and not self.control[STOP_FLAG]:
            time.sleep(self.poll_interval)
            raise_if_interrupted()
            event = self._scan(limit, start_ns)
            elapsed = (time.monotonic_ns() - start_ns) / 1e9
            self._sample_live(elapsed)
            if stopped_by is None:
                if event == REACHED:
                    stopped_by = "converged"
                elif event == DIVERGED:
                    stopped_by = "diverged"
                elif self.rule.max_time is not None and elapsed >= self.rule.max_time:
                    stopped_by = "timeout"
                elif self.control[ERROR]:
                    stopped_by = "error"
                if stopped_by is not None:
                    self.control[STOP_FLAG] = 1
        return stopped_by

    def _sample_live(self, elapsed: float) -> None:
        """Record how many parameter vectors the strategy holds now (a racy read, a sample)."""
        self.live.sample(elapsed, self.spec.strategy.live_vectors_now(self.state,
                                                                      self.config.threads))

    def _scan(self, limit: float, start_ns: int) -> int:
        target = -math.inf if self.rule.target_loss is None else self.rule.target_loss
        event = self.monitor.scan(self.log.arrays(), target, limit)
        if self.monitor.cells[FILLED]:  # there is a smoothed loss to trace
            self.trace.append(((time.monotonic_ns() - start_ns) / 1e9,
                               self.monitor.applied_seen, self.monitor.smoothed_loss))
        return event
