"""A run plan, made and checked once: the one :class:`RunConfig` of a run.

:func:`configure` takes specs already parsed (:mod:`asgdbench.engine.choice`) and the
workload's defaults, and checks the result (:func:`validate_config`) before any data is
loaded or any state allocated. :func:`asgdbench.engine.runner.run` calls it once per run,
:func:`asgdbench.study.grid.expand` once per cell; running a cell does not configure again
(:func:`asgdbench.engine.runner.run_planned`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from asgdbench.engine.choice import Choice, parse_step
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunConfig
from asgdbench.errors import ConfigError
from asgdbench.plugins.step_rules import StepSpec
from asgdbench.plugins.workloads import Defaults

if TYPE_CHECKING:  # the strategy registry loads numba: not at import (the CLI starts fast)
    from asgdbench.plugins.strategies import StrategySpec


def configure(workload: str, defaults: Defaults, spec: StrategySpec, threads: int, *,
              step: StepSpec | None = None, lr: float | None = None,
              batch_size: int | None = None, seed: int = 0,
              target_loss: float | None = WORKLOAD_DEFAULT,
              max_time: float | None = WORKLOAD_DEFAULT, max_updates: int | None = None,
              dtype: str = "float32") -> RunConfig:
    """The run's full configuration from parsed specs, the workload's defaults filled in;
    raises ConfigError if invalid. The one place a configuration is made and checked."""
    step_spec = parse_step(step)  # None: the default rule; a StepSpec passes through
    step_spec.make_state(threads)  # a rule refuses bad parameters here, before any run
    config = RunConfig(
        workload=workload,
        strategy=Choice.of(spec),
        threads=threads,
        lr=float(defaults.lr if lr is None else lr),
        batch_size=int(defaults.batch_size if batch_size is None else batch_size),
        seed=int(seed),
        target_loss=defaults.target_loss if target_loss is WORKLOAD_DEFAULT else target_loss,
        max_time=defaults.max_time if max_time is WORKLOAD_DEFAULT else max_time,
        max_updates=max_updates,
        dtype=dtype,
        step=Choice.of(step_spec),
    )
    validate_config(config, spec)
    return config


def validate_config(config: RunConfig, spec: StrategySpec) -> None:
    """Refuse a configuration no run could honour, one ConfigError line each."""
    from asgdbench.engine import preflight  # loads numba (the worker's telemetry types)

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
