"""One run: m threads train one shared model under one strategy, then report.

The runner owns everything around the strategy: it builds the shared state,
compiles every kernel before the clock starts, releases all threads from one
start barrier, watches the loss log for the stop rules, and assembles the
result. BLAS stays single-threaded per worker, or m workers would each spawn
their own BLAS threads and oversubscribe the machine.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba.core.errors import NumbaError
from threadpoolctl import threadpool_limits

from asgdbench.engine import blas, preflight
from asgdbench.engine.choice import Choice, parse_step, parse_strategy
from asgdbench.engine.machine import environment
from asgdbench.engine.monitor import (
    DIVERGED,
    EVENT_TIME_NS,
    EVENT_UPDATES,
    FILLED,
    NEXT_ENTRY,
    REACHED,
    LiveVectorSampler,
    LossMonitor,
    StopRule,
)
from asgdbench.engine.plan import configure
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunConfig, RunResult
from asgdbench.engine.statistics import downsample_trace, histogram_summary
from asgdbench.engine.worker import (
    APPLIED_COUNT,
    ATTEMPTS_SUM,
    COMPUTED,
    DROPPED_COUNT,
    FACTOR_BIN_WIDTH,
    FACTOR_MAX,
    FACTOR_MIN,
    LOG_LOST,
    STALENESS_MAX,
    STALENESS_SUM,
    STEP_SUM,
    LossLog,
    ThreadTelemetry,
    compiled_worker_loop,
)
from asgdbench.errors import ConfigError, PluginError
from asgdbench.plugins.registry import describe_source
from asgdbench.plugins.step_rules import (
    StepSpec,
    available_step_rules,
    check_rule_state,
    step_rule_source,
)
from asgdbench.plugins.strategies import StrategySpec, available_strategies, strategy_source
from asgdbench.plugins.workloads import WORKLOADS, Workload, available_workloads, load_workload
from asgdbench.primitives.protocol import CONTROL_CELLS, ERROR, GO, MAX_UPDATES, READY, STOP_FLAG
from asgdbench.primitives.rng import thread_states

UNLIMITED_UPDATES = 1 << 62
STOP_GRACE_S = 30.0
"""How long threads may take to end once the stop flag is up before the run counts as stuck."""

def single_threaded_blas() -> threadpool_limits:
    """Limit every BLAS in the process to one thread, the one numba calls included.

    threadpoolctl only reaches libraries already loaded, and numba binds
    ``np.dot`` to SciPy's BLAS lazily at compile time, so load it first.
    """
    return blas.single_threaded()


def run(
    workload: str | Workload,
    strategy: str | StrategySpec | Choice,
    threads: int,
    *,
    step: str | StepSpec | Choice | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    target_loss: float | None = WORKLOAD_DEFAULT,
    max_time: float | None = WORKLOAD_DEFAULT,
    max_updates: int | None = None,
    dtype: str = "float32",
    data_dir: str | None = None,
    window: int | None = None,
    diverge_factor: float = 10.0,
    poll_interval: float = 0.005,
    stop_grace_s: float = STOP_GRACE_S,
) -> RunResult:
    """Train ``workload`` with ``threads`` threads under ``strategy`` until a stop rule fires.

    ``strategy`` and ``step`` are specs (``leashed:tp=inf``; ``step`` default ``constant``:
    every apply takes ``lr``), parsed here once. ``target_loss``/``max_time`` default to
    the workload's; pass None to disable one. ``max_updates`` is an exact update budget.
    ``window`` is how many minibatch losses the smoothed loss averages (default: about
    2048 samples). Threads that have not ended ``stop_grace_s`` seconds after the stop
    flag are reported as stuck: the result then has status ``error``.
    """
    spec, step_spec = parse_strategy(strategy), parse_step(step)
    if isinstance(workload, str):
        workload = load_workload(workload, data_dir=data_dir, dtype=dtype)
    config = configure(workload.name, workload.defaults, spec, threads, step=step_spec, lr=lr,
                       batch_size=batch_size, seed=seed, target_loss=target_loss,
                       max_time=max_time, max_updates=max_updates, dtype=workload.dtype.name)
    return run_planned(workload, config, spec, step_spec, window=window,
                       diverge_factor=diverge_factor, poll_interval=poll_interval,
                       stop_grace_s=stop_grace_s)


def run_planned(workload: Workload, config: RunConfig, spec: StrategySpec | None = None,
                step_spec: StepSpec | None = None, *, window: int | None = None,
                diverge_factor: float = 10.0, poll_interval: float = 0.005,
                stop_grace_s: float = STOP_GRACE_S) -> RunResult:
    """Run a configuration :func:`configure` (or :func:`asgdbench.study.grid.expand`) made,
    on a loaded workload: nothing is parsed or configured again. Without ``spec`` and
    ``step_spec``, the config's choices are bound to the registered plugins of their names."""
    prepared = _prepare(workload, config, spec or parse_strategy(config.strategy),
                        step_spec or parse_step(config.step), window=window,
                        diverge_factor=diverge_factor, poll_interval=poll_interval,
                        stop_grace_s=stop_grace_s)
    with single_threaded_blas(), interrupts_kept():
        return prepared.execute()


def _prepare(workload: Workload, config: RunConfig, spec: StrategySpec, step_spec: StepSpec, *,
             window: int | None, diverge_factor: float, poll_interval: float,
             stop_grace_s: float) -> "_Run":
    """Everything a run does before its threads start: check, build the state."""
    if workload.name != config.workload or workload.dtype.name != config.dtype:
        raise ConfigError(f"the run is planned for {config.workload} in {config.dtype}, not "
                          f"{workload.name} in {workload.dtype.name}")
    preflight.check(workload, spec, config)  # before any state exists
    if window is None:
        window = max(16, math.ceil(2048 / config.batch_size))
    rule = StopRule(config.target_loss, config.max_time, config.max_updates, diverge_factor, window)
    return _Run(workload, spec, step_spec, config, rule, poll_interval, stop_grace_s)


def worker_loop_for(workload: str | Workload, strategy: str | StrategySpec | Choice, *,
                    step: str | StepSpec | Choice | None = None, dtype: str = "float32",
                    threads: int = 1, data_dir: str | None = None, cache: bool = True) -> Any:
    """The compiled worker loop a run of this strategy, step rule, workload and dtype calls.

    ``cache=True``: the one runs load from the compile cache (compiled and stored if it is
    not there: ``asgdbench cache warm`` calls this); ``cache=False``: a fresh compile of the
    same generated source in memory, whose LLVM IR numba shows (it hides cached code's IR)::

        loop = worker_loop_for("mlp-digits", "leashed", cache=False)
        ir = loop.inspect_llvm(loop.signatures[0])
    """
    spec, step_spec = parse_strategy(strategy), parse_step(step)
    if isinstance(workload, str):
        workload = load_workload(workload, data_dir=data_dir, dtype=dtype)
    config = configure(workload.name, workload.defaults, spec, threads, step=step_spec,
                       target_loss=None, max_time=None, max_updates=1,
                       dtype=workload.dtype.name)
    prepared = _prepare(workload, config, spec, step_spec, window=None, diverge_factor=10.0,
                        poll_interval=0.005, stop_grace_s=STOP_GRACE_S)
    with single_threaded_blas():
        return prepared.compile_loop(prepared.control, cache=cache)


_INTERRUPTED = threading.Event()


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Make sure a Ctrl-C during a run is never lost.

    Python raises KeyboardInterrupt wherever the main thread happens to be, and
    some places swallow it: a ctypes callback (LLVM's object cache calls one
    while numba compiles) prints "Exception ignored" and goes on. So the
    handler also remembers the interrupt, and the run raises it again at its
    next checkpoint (:func:`raise_if_interrupted`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # ignored (SIG_IGN) or default: leave it as it is
        yield
        return

    def remember(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        previous(signum, frame)

    unraisable = sys.unraisablehook

    def quiet_about_interrupts(report: Any) -> None:
        """Drop the "Exception ignored" report of a swallowed interrupt: it is raised again."""
        if not (isinstance(report.exc_type, type) and issubclass(report.exc_type, KeyboardInterrupt)):
            unraisable(report)

    _INTERRUPTED.clear()
    signal.signal(signal.SIGINT, remember)
    sys.unraisablehook = quiet_about_interrupts
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = unraisable
        _INTERRUPTED.clear()


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that something swallowed.

    Only in the main thread, whose run :func:`interrupts_kept` guards: a run in another
    thread (a test's, an in-process worker's) must not take the main thread's interrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if _INTERRUPTED.is_set():
        _INTERRUPTED.clear()
        raise KeyboardInterrupt


@dataclass
class _ThreadSetup:
    """Everything one worker thread passes to :func:`worker_loop` besides shared state."""

    grad: np.ndarray
    rows: np.ndarray
    work: tuple
    rng: np.ndarray
    timespec: np.ndarray


class _Run:
    """The mechanics of one run: state, threads, monitoring, result."""

    def __init__(self, workload: Workload, spec: StrategySpec, step_spec: StepSpec,
                 config: RunConfig, rule: StopRule, poll_interval: float,
                 stop_grace_s: float) -> None:
        self.workload, self.spec, self.config, self.rule = workload, spec, config, rule
        self.step_spec = step_spec
        self.rule_state = check_rule_state(step_spec.make_state(config.threads),
                                           step_spec.name)
        self.poll_interval, self.stop_grace_s = poll_interval, stop_grace_s
        strategy = spec.strategy
        self.kernels = {"read": strategy.read, "update": strategy.update,
                        "retire": strategy.retire, "gradient": workload.gradient,
                        "rule": step_spec.rule.step}
        self.loop: Any = None  # the compiled worker loop, once _compile has run
        self.init_params = workload.init_params(config.seed)
        self.state = strategy.make_state(self.init_params, config.threads, **spec.kwargs)
        rngs = thread_states(config.seed, config.threads)
        self.setups = [
            _ThreadSetup(np.zeros(workload.n_params, workload.dtype),
                         np.zeros(config.batch_size, np.int64),
                         workload.make_workspace(config.batch_size), rngs[tid],
                         np.zeros(2, np.int64))
            for tid in range(config.threads)
        ]
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
        return self._result(stopped_by, start_ns, end_ns, initial_loss, compile_s)

    def _join(self, threads: list[threading.Thread]) -> int:
        """Join every thread within the grace period after the stop flag; how many are stuck."""
        deadline = time.monotonic() + self.stop_grace_s
        started = [thread for thread in threads if thread.ident is not None]
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in started)

    def _failure(self) -> str | None:
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
        return compiled_worker_loop(self.kernels, self._loop_args(0, control), cache=cache)

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

    # -- the result ----------------------------------------------------------------

    def _result(self, stopped_by: str | None, start_ns: int, end_ns: int,
                initial_loss: float, compile_s: float) -> RunResult:
        config, strategy, telemetry = self.config, self.spec.strategy, self.telemetry
        counters = telemetry.counters
        event = self.monitor.event
        reached = event == REACHED
        failure = self._failure()
        if failure is not None:
            status = "error"
        elif event == DIVERGED:
            status = "diverged"
        elif reached:
            status = "converged"
        elif stopped_by == "timeout":
            status = "timeout"
        else:
            status = "budget"
        wall_s = (end_ns - start_ns) / 1e9
        applied = int(counters[:, APPLIED_COUNT].sum())
        if self.stuck_threads:  # the state is still being written: report nothing read from it
            final_params, evaluation, inspected = None, {}, {}
        else:
            final_params = strategy.final_params(self.state)
            evaluation = self.workload.evaluate(final_params)
            inspected = strategy.inspect(self.state)
        peak_vectors = int(strategy.peak_param_vectors(self.state, config.threads))
        staleness_max = int(counters[:, STALENESS_MAX].max()) if applied else None
        overrun_s = None
        if stopped_by == "timeout" and self.rule.max_time is not None:
            overrun_s = wall_s - self.rule.max_time
        vector_bytes = self.workload.n_params * self.workload.dtype.itemsize
        live = self.live.summary(wall_s)
        return RunResult(
            config=config,
            status=status,
            wall_s=wall_s,
            time_to_target_s=(self.monitor.cells[EVENT_TIME_NS] - start_ns) / 1e9 if reached else None,
            steps_to_target=int(self.monitor.cells[EVENT_UPDATES]) if reached else None,
            updates_applied=applied,
            gradients_computed=int(counters[:, COMPUTED].sum()),
            gradients_dropped=int(counters[:, DROPPED_COUNT].sum()),
            updates_per_s=applied / wall_s if wall_s > 0 else 0.0,
            per_thread_updates=[int(v) for v in counters[:, APPLIED_COUNT]],
            per_thread_gradients=[int(v) for v in counters[:, COMPUTED]],
            loss_trace=downsample_trace(self.trace),
            staleness=histogram_summary(telemetry.staleness.sum(axis=0), staleness_max,
                                        exact_sum=int(counters[:, STALENESS_SUM].sum())),
            cas=self._cas_summary() if strategy.uses_cas else None,
            peak_param_vectors=peak_vectors,
            peak_param_bytes=peak_vectors * vector_bytes,
            live_param_vectors=live,
            mean_live_param_bytes=live.get("mean", peak_vectors) * vector_bytes,
            initial_loss=initial_loss,
            final_loss=self.monitor.smoothed_loss,
            test_loss=evaluation.get("test_loss"),
            test_accuracy=evaluation.get("test_accuracy"),
            compile_s=compile_s,
            step_rule=self._step_summary(),
            evaluation=evaluation,
            strategy_state=inspected,
            environment=environment(),
            final_params=None if final_params is None else final_params.copy(),
            error=failure,
            stuck_threads=self.stuck_threads,
            overrun_s=overrun_s,
            log_entries_lost=int(counters[:, LOG_LOST].sum()) + self.monitor.lost_entries,
            strategy_source=(strategy_source(self.spec.name)
                             if available_strategies().get(self.spec.name) is strategy else {}),
            workload_source=(WORKLOADS.source(self.workload.name)
                             if self.workload.name in available_workloads() else {}),
            step_source=(step_rule_source(self.step_spec.name)
                         if available_step_rules().get(self.step_spec.name)
                         is self.step_spec.rule else {}),
        )

    def _step_summary(self) -> dict[str, Any]:
        """What the step rule did to the applied updates: mean step, factor range and histogram."""
        steps, applied = self.telemetry.steps, int(self.telemetry.counters[:, APPLIED_COUNT].sum())
        summary: dict[str, Any] = {"rule": self.step_spec.label, "params": self.step_spec.kwargs,
                                   "lr": self.config.lr,
                                   "state": self.step_spec.rule.inspect(self.rule_state)}
        if applied == 0:
            return summary | {"step_sum": 0.0, "mean_step": None, "mean_factor": None,
                              "factor_min": None, "factor_max": None, "factors": {}}
        step_sum = float(steps[:, STEP_SUM].sum())
        mean_step = step_sum / applied
        counts = self.telemetry.factors.sum(axis=0)
        return summary | {
            "step_sum": step_sum,  # of the applied updates: exact where the steps are dyadic
            "mean_step": mean_step,
            "mean_factor": mean_step / self.config.lr,
            "factor_min": float(steps[:, FACTOR_MIN].min()),
            "factor_max": float(steps[:, FACTOR_MAX].max()),
            "factor_bin_width": FACTOR_BIN_WIDTH,
            # bin i: factors in [i, i + 1) * width; the last bin also holds everything above
            "factors": {f"{i * FACTOR_BIN_WIDTH:g}": int(counts[i]) for i in np.flatnonzero(counts)},
        }

    def _cas_summary(self) -> dict[str, Any]:
        attempts = self.telemetry.attempts.sum(axis=0)
        total_attempts = int(self.telemetry.counters[:, ATTEMPTS_SUM].sum())
        successes = int(self.telemetry.counters[:, APPLIED_COUNT].sum())
        failures = total_attempts - successes
        return {
            "attempts": histogram_summary(attempts),
            "total_attempts": total_attempts,
            "failures": failures,
            "failure_rate": failures / total_attempts if total_attempts else 0.0,
        }
