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

from threadpoolctl import threadpool_limits

from asgdbench.engine import blas, preflight
from asgdbench.engine.choice import Choice, parse_step, parse_strategy
from asgdbench.engine.interrupts import interrupts_kept, raise_if_interrupted
from asgdbench.engine.monitor import StopRule
from asgdbench.engine.plan import configure, validate_config
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunConfig, RunResult
from asgdbench.engine.threaded_run import UNLIMITED_UPDATES
from asgdbench.engine.threaded_run import ThreadedRun as _Run  # what _prepare builds
from asgdbench.errors import ConfigError
from asgdbench.plugins.step_rules import StepSpec
from asgdbench.plugins.strategies import StrategySpec
from asgdbench.plugins.workloads import Workload, load_workload

__all__ = ["STOP_GRACE_S", "UNLIMITED_UPDATES", "configure", "interrupts_kept",
           "raise_if_interrupted", "run", "run_planned", "single_threaded_blas",
           "validate_config", "worker_loop_for"]

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


