"""One run: m threads train one shared model under one strategy, then report.

The runner owns everything around the strategy: it builds the shared state,
compiles every kernel before the clock starts, releases all threads from one
start barrier, watches the loss log for the stop rules, and assembles the
result. BLAS stays single-threaded per worker, or m workers would each spawn
their own BLAS threads and oversubscribe the machine.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from asgdbench.errors import ConfigError
from asgdbench.monitor import (
    DIVERGED, EVENT_TIME_NS, EVENT_UPDATES, FILLED, REACHED, LossMonitor, StopRule,
)
from asgdbench.protocol import CONTROL_CELLS, ERROR, GO, MAX_UPDATES, READY, STOP_FLAG
from asgdbench.registry import StrategySpec, parse_spec
from asgdbench.result import RunConfig, RunResult
from asgdbench.rng import thread_states
from asgdbench.telemetry import downsample_trace, environment, histogram_summary
from asgdbench.worker import (
    APPLIED_COUNT, ATTEMPTS_SUM, COMPUTED, DROPPED_COUNT, STALENESS_MAX, LossLog, ThreadTelemetry,
    worker_loop,
)
from asgdbench.workloads import Defaults, Workload, load_workload

UNLIMITED_UPDATES = 1 << 62
WORKLOAD_DEFAULT: Any = object()
"""Pass for ``target_loss``/``max_time`` to take the workload's value (None disables a rule)."""


def single_threaded_blas() -> threadpool_limits:
    """Limit every BLAS in the process to one thread, the one numba calls included.

    threadpoolctl only reaches libraries already loaded, and numba binds
    ``np.dot`` to SciPy's BLAS lazily at compile time, so load it first.
    """
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS numba's np.dot calls)

    return threadpool_limits(limits=1, user_api="blas")


def run(
    workload: str | Workload,
    algorithm: str | StrategySpec,
    threads: int,
    *,
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
) -> RunResult:
    """Train ``workload`` with ``threads`` threads under ``algorithm`` until a stop rule fires.

    ``target_loss``/``max_time`` default to the workload's; pass None to disable
    one. ``max_updates`` is an exact update budget. ``window`` is how many
    minibatch losses the smoothed loss averages (default: about 2048 samples).
    """
    spec = parse_spec(algorithm)
    if isinstance(workload, str):
        workload = load_workload(workload, data_dir=data_dir, dtype=dtype)
    config = configure(workload.name, workload.defaults, spec, threads, lr=lr,
                       batch_size=batch_size, seed=seed, target_loss=target_loss,
                       max_time=max_time, max_updates=max_updates, dtype=workload.dtype.name)
    if window is None:
        window = max(16, math.ceil(2048 / config.batch_size))
    rule = StopRule(config.target_loss, config.max_time, config.max_updates, diverge_factor, window)
    with single_threaded_blas():
        return _Run(workload, spec, config, rule, poll_interval).execute()


def configure(workload: str, defaults: Defaults, spec: StrategySpec, threads: int, *,
              lr: float | None = None, batch_size: int | None = None, seed: int = 0,
              target_loss: float | None = WORKLOAD_DEFAULT,
              max_time: float | None = WORKLOAD_DEFAULT, max_updates: int | None = None,
              dtype: str = "float32") -> RunConfig:
    """The run's full configuration, the workload's defaults filled in; raises ConfigError if invalid."""
    config = RunConfig(
        workload=workload,
        algorithm=spec.label,
        threads=threads,
        lr=float(defaults.lr if lr is None else lr),
        batch_size=int(defaults.batch_size if batch_size is None else batch_size),
        seed=int(seed),
        target_loss=defaults.target_loss if target_loss is WORKLOAD_DEFAULT else target_loss,
        max_time=defaults.max_time if max_time is WORKLOAD_DEFAULT else max_time,
        max_updates=max_updates,
        dtype=dtype,
    )
    validate_config(config, spec)
    return config


def validate_config(config: RunConfig, spec: StrategySpec) -> None:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    threads = config.threads
    require(isinstance(threads, (int, np.integer)) and threads >= 1,
            f"threads must be an integer >= 1, not {threads!r}")
    limit = spec.strategy.max_threads
    require(limit is None or threads <= limit,
            f"strategy {spec.name!r} runs with at most {limit} thread(s), not {threads}")
    require(math.isfinite(config.lr) and config.lr > 0, f"lr must be > 0, not {config.lr:g}")
    require(config.batch_size >= 1, f"batch size must be >= 1, not {config.batch_size}")
    require(config.max_time is None or config.max_time > 0,
            f"max time must be > 0 seconds, not {config.max_time}")
    require(config.max_updates is None or config.max_updates >= 1,
            f"max updates must be >= 1, not {config.max_updates}")
    require(config.target_loss is not None or config.max_time is not None
            or config.max_updates is not None,
            "the run needs a stop rule: a target loss, a time or an update budget")


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

    def __init__(self, workload: Workload, spec: StrategySpec, config: RunConfig,
                 rule: StopRule, poll_interval: float) -> None:
        self.workload, self.spec, self.config, self.rule = workload, spec, config, rule
        self.poll_interval = poll_interval
        strategy = spec.strategy
        self.kernels = (strategy.read, strategy.update, strategy.retire, workload.gradient)
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
        self.control[MAX_UPDATES] = config.max_updates or UNLIMITED_UPDATES
        self.log = LossLog.allocate()
        self.telemetry = ThreadTelemetry.allocate(config.threads)
        self.monitor = LossMonitor.for_window(rule.window)
        self.trace: list[tuple[float, int, float]] = []
        self.errors: list[BaseException] = []

    # -- phases ------------------------------------------------------------------

    def execute(self) -> RunResult:
        compile_s = self._compile()
        initial_loss = float(self.workload.training_loss(self.init_params))
        limit = self.rule.divergence_limit(initial_loss)
        threads = [threading.Thread(target=self._thread_main, args=(tid, self.control),
                                    name=f"asgdbench-worker-{tid}", daemon=True)
                   for tid in range(self.config.threads)]
        for thread in threads:
            thread.start()
        try:
            start_ns = self._release(threads)
            stopped_by = self._watch(threads, start_ns, limit)
        except BaseException:  # Ctrl-C included: stop the workers before leaving
            self.control[STOP_FLAG] = 1
            for thread in threads:
                thread.join()
            raise
        end_ns = time.monotonic_ns()
        if self.errors:
            raise RuntimeError(f"a worker thread failed: {self.errors[0]!r}") from self.errors[0]
        if self.control[ERROR]:
            raise RuntimeError(f"strategy {self.spec.label!r} broke an invariant "
                               "(see its ERROR cell); the run is invalid")
        self._scan(limit, start_ns)
        return self._result(stopped_by, start_ns, end_ns, initial_loss, compile_s)

    def _compile(self) -> float:
        """Compile every kernel before the clock starts: run the loop with the stop flag set."""
        begin = time.perf_counter()
        control = np.zeros_like(self.control)
        control[STOP_FLAG] = control[GO] = 1
        self._thread_main(0, control)
        if self.errors:
            raise self.errors[0]
        self.monitor.scan(self.log.arrays(), math.inf, math.inf)  # compiles; the log is empty
        return time.perf_counter() - begin

    def _thread_main(self, tid: int, control: np.ndarray) -> None:
        setup = self.setups[tid]
        read, update, retire, gradient = self.kernels
        try:
            worker_loop(read, update, retire, gradient, self.state, tid,
                        self.workload.train_data, self.workload.n_samples, setup.work,
                        setup.grad, setup.rows, setup.rng, self.lr, control,
                        self.log.arrays(), self.telemetry.counters, self.telemetry.staleness,
                        self.telemetry.attempts, setup.timespec)
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
        """Poll the log until the threads end; returns the rule that stopped them, if any."""
        stopped_by = None
        while any(t.is_alive() for t in threads):
            time.sleep(self.poll_interval)
            event = self._scan(limit, start_ns)
            elapsed = (time.monotonic_ns() - start_ns) / 1e9
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
        for thread in threads:
            thread.join()
        return stopped_by

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
        if event == DIVERGED:
            status = "diverged"
        elif reached:
            status = "converged"
        elif stopped_by == "timeout":
            status = "timeout"
        else:
            status = "budget"
        wall_s = (end_ns - start_ns) / 1e9
        applied = int(counters[:, APPLIED_COUNT].sum())
        final_params = strategy.final_params(self.state)
        evaluation = self.workload.evaluate(final_params)
        peak_vectors = int(strategy.peak_param_vectors(self.state, config.threads))
        staleness_max = int(counters[:, STALENESS_MAX].max()) if applied else None
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
            staleness=histogram_summary(telemetry.staleness.sum(axis=0), staleness_max),
            cas=self._cas_summary() if strategy.uses_cas else None,
            peak_param_vectors=peak_vectors,
            peak_param_bytes=peak_vectors * self.workload.n_params * self.workload.dtype.itemsize,
            initial_loss=initial_loss,
            final_loss=self.monitor.smoothed_loss,
            test_loss=evaluation.get("test_loss"),
            test_accuracy=evaluation.get("test_accuracy"),
            compile_s=compile_s,
            evaluation=evaluation,
            strategy_state=strategy.inspect(self.state),
            environment=environment(),
            final_params=final_params.copy(),
        )

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
