"""One run: m threads train one shared model under one strategy, then report.

The runner plans a run (parse the specs, fill in the workload's defaults, check the
configuration and the machine) and hands it to :class:`~asgdbench.engine.threaded_run.ThreadedRun`,
which owns the threads, and whose record :mod:`asgdbench.engine.result_assembly` builds.
BLAS stays single-threaded per worker, or m workers would each spawn their own BLAS threads
and oversubscribe the machine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from asgdbench.engine import blas, preflight
from asgdbench.engine.interrupts import interrupts_kept, raise_if_interrupted
from asgdbench.engine.monitor import StopRule
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunConfig, RunResult
from asgdbench.engine.threaded_run import UNLIMITED_UPDATES
from asgdbench.engine.threaded_run import ThreadedRun as _Run  # what _prepare builds
from asgdbench.errors import ConfigError
from asgdbench.plugins.step_rules import StepSpec, parse_step_spec
from asgdbench.plugins.strategies import StrategySpec, parse_spec
from asgdbench.plugins.workloads import Defaults, Workload, load_workload

__all__ = ["STOP_GRACE_S", "UNLIMITED_UPDATES", "configure", "interrupts_kept",
           "raise_if_interrupted", "run", "single_threaded_blas", "validate_config",
           "worker_loop_for"]

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
    algorithm: str | StrategySpec,
    threads: int,
    *,
    step: str | StepSpec | None = None,
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
    """Train ``workload`` with ``threads`` threads under ``algorithm`` until a stop rule fires.

    ``step`` is the step-rule spec (default ``constant``: every apply takes ``lr``).
    ``target_loss``/``max_time`` default to the workload's; pass None to disable
    one. ``max_updates`` is an exact update budget. ``window`` is how many
    minibatch losses the smoothed loss averages (default: about 2048 samples).
    Threads that have not ended ``stop_grace_s`` seconds after the stop flag
    are reported as stuck: the result then has status ``error``.
    """
    prepared = _prepare(workload, algorithm, threads, step=step, lr=lr, batch_size=batch_size,
                        seed=seed, target_loss=target_loss, max_time=max_time,
                        max_updates=max_updates, dtype=dtype, data_dir=data_dir, window=window,
                        diverge_factor=diverge_factor, poll_interval=poll_interval,
                        stop_grace_s=stop_grace_s)
    with single_threaded_blas(), interrupts_kept():
        return prepared.execute()


def _prepare(workload: str | Workload, algorithm: str | StrategySpec, threads: int, *,
             step: str | StepSpec | None, lr: float | None, batch_size: int | None, seed: int,
             target_loss: float | None, max_time: float | None, max_updates: int | None,
             dtype: str, data_dir: str | None, window: int | None, diverge_factor: float,
             poll_interval: float, stop_grace_s: float) -> "_Run":
    """Everything :func:`run` does before its threads start: parse, check, build the state."""
    spec = parse_spec(algorithm)
    step_spec = parse_step_spec(step)
    if isinstance(workload, str):
        workload = load_workload(workload, data_dir=data_dir, dtype=dtype)
    config = configure(workload.name, workload.defaults, spec, threads, step=step_spec, lr=lr,
                       batch_size=batch_size, seed=seed, target_loss=target_loss,
                       max_time=max_time, max_updates=max_updates, dtype=workload.dtype.name)
    preflight.check(workload, spec, config)  # before any state exists
    if window is None:
        window = max(16, math.ceil(2048 / config.batch_size))
    rule = StopRule(config.target_loss, config.max_time, config.max_updates, diverge_factor, window)
    return _Run(workload, spec, step_spec, config, rule, poll_interval, stop_grace_s)


def worker_loop_for(workload: str | Workload, algorithm: str | StrategySpec, *,
                    step: str | StepSpec | None = None, dtype: str = "float32",
                    threads: int = 1, data_dir: str | None = None, cache: bool = True) -> Any:
    """The compiled worker loop a run of this strategy, step rule, workload and dtype calls.

    ``cache=True``: the one runs load from the compile cache (compiled and stored if it is
    not there: ``asgdbench cache warm`` calls this); ``cache=False``: a fresh compile of the
    same generated source in memory, whose LLVM IR numba shows (it hides cached code's IR)::

        loop = worker_loop_for("mlp-digits", "leashed", cache=False)
        ir = loop.inspect_llvm(loop.signatures[0])
    """
    prepared = _prepare(workload, algorithm, threads, step=step, lr=None, batch_size=None,
                        seed=0, target_loss=None, max_time=None, max_updates=1, dtype=dtype,
                        data_dir=data_dir, window=None, diverge_factor=10.0,
                        poll_interval=0.005, stop_grace_s=STOP_GRACE_S)
    with single_threaded_blas():
        return prepared.compile_loop(prepared.control, cache=cache)


def configure(workload: str, defaults: Defaults, spec: StrategySpec, threads: int, *,
              step: str | StepSpec | None = None, lr: float | None = None,
              batch_size: int | None = None, seed: int = 0,
              target_loss: float | None = WORKLOAD_DEFAULT,
              max_time: float | None = WORKLOAD_DEFAULT, max_updates: int | None = None,
              dtype: str = "float32") -> RunConfig:
    """The run's full configuration, the workload's defaults filled in; raises ConfigError if invalid."""
    step_spec = parse_step_spec(step)
    step_spec.make_state(threads)  # a rule refuses bad parameters here, before any run
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
        step=step_spec.label,
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
    preflight.check_blas_threads(threads)  # no workload needed: fail before loading data
    require(math.isfinite(config.lr) and config.lr > 0, f"lr must be > 0, not {config.lr:g}")
    require(config.batch_size >= 1, f"batch size must be >= 1, not {config.batch_size}")
    require(config.max_time is None or config.max_time > 0,
            f"max time must be > 0 seconds, not {config.max_time}")
    require(config.max_updates is None or config.max_updates >= 1,
            f"max updates must be >= 1, not {config.max_updates}")
    most = spec.strategy.max_updates
    require(config.max_updates is None or most is None or config.max_updates <= most,
            f"strategy {spec.name!r} counts at most {most} updates, not {config.max_updates}")
    require(config.target_loss is not None or config.max_time is not None
            or config.max_updates is not None,
            "the run needs a stop rule: a target loss, a time or an update budget")
