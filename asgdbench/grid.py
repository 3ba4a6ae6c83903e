"""The compare grid: strategies x thread counts x step sizes x repeats.

A grid is a list of :class:`RunConfig`, one per run, built and validated in
full before the first run starts so that a typo fails at once rather than an
hour in. Runs execute one at a time, never concurrently: two runs sharing the
cores would measure each other. A cell's identity is ``RunConfig.key()``, which
is how an interrupted grid resumes without redoing finished runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence

from tqdm import tqdm

from asgdbench.errors import ConfigError
from asgdbench.registry import parse_spec
from asgdbench.result import RunConfig, RunResult
from asgdbench.runner import WORKLOAD_DEFAULT, configure, run
from asgdbench.workloads import Workload, WorkloadSpec

DEFAULT_WORKLOAD = "mlp-digits"
DEFAULT_ALGORITHMS = ("seq", "lock", "hogwild", "leashed:tp=0", "leashed:tp=1", "leashed:tp=inf")
DEFAULT_THREADS = (1, 2, 4, 8)
DEFAULT_REPEATS = 3


def expand(
    workload: WorkloadSpec,
    algorithms: Sequence[str],
    threads: Sequence[int],
    lrs: Sequence[float] | None = None,
    repeats: int = 1,
    *,
    first_seed: int = 0,
    batch_size: int | None = None,
    target_loss: float | None = WORKLOAD_DEFAULT,
    max_time: float | None = WORKLOAD_DEFAULT,
    max_updates: int | None = None,
    dtype: str = "float32",
) -> list[RunConfig]:
    """Every run of the grid, strategy-major, repeats (seeds) innermost.

    Thread counts a strategy cannot run with (``seq`` beyond 1) are skipped;
    a strategy left with none of the requested counts is an error. ``lrs``
    and ``batch_size`` default to the workload's.
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, not {repeats}")
    defaults = workload.defaults
    cells = []
    for spec in (parse_spec(text) for text in algorithms):
        limit = spec.strategy.max_threads
        counts = [count for count in threads if limit is None or count <= limit]
        if not counts:
            requested = ", ".join(str(count) for count in threads)
            raise ConfigError(f"strategy {spec.name!r} runs with at most {limit} thread(s), "
                              f"not {requested}")
        for count in counts:
            for lr in lrs or [defaults.lr]:
                for seed in range(first_seed, first_seed + repeats):
                    config = configure(workload.name, defaults, spec, count, lr=lr,
                                       batch_size=batch_size, seed=seed,
                                       target_loss=target_loss, max_time=max_time,
                                       max_updates=max_updates, dtype=dtype)
                    cells.append(config)
    return cells


def pending(cells: Sequence[RunConfig], finished: Collection[tuple]) -> list[RunConfig]:
    """The cells whose key is not among the ``finished`` keys."""
    return [config for config in cells if config.key() not in finished]


def run_cell(workload: Workload, config: RunConfig) -> RunResult:
    """Run one cell of a grid on an already loaded workload."""
    return run(workload, config.algorithm, config.threads, lr=config.lr,
               batch_size=config.batch_size, seed=config.seed, target_loss=config.target_loss,
               max_time=config.max_time, max_updates=config.max_updates)


def run_grid(workload: Workload, cells: Sequence[RunConfig],
             on_result: Callable[[RunResult], None]) -> None:
    """Run the cells one after another, handing each result over as soon as it exists.

    A progress bar with an ETA goes to stderr. Ctrl-C stops the run in progress
    and propagates; every result handed over before it is the caller's.
    """
    with tqdm(total=len(cells), unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        for config in cells:
            bar.set_postfix_str(f"{config.algorithm} threads={config.threads} "
                                f"lr={config.lr:g} seed={config.seed}", refresh=True)
            on_result(run_cell(workload, config))
            bar.update()
