"""The compare grid: strategies x step rules x thread counts x step sizes x repeats.

A grid is a list of :class:`RunConfig`, one per run, built and validated in
full before the first run starts so that a typo fails at once rather than an
hour in. Runs execute one at a time, never concurrently: two runs sharing the
cores would measure each other. A cell's identity is ``RunConfig.key()``, which
is how an interrupted grid resumes without redoing finished runs; a resume
under other stop rules is refused, since its runs would not be repeats.
Before the first run, every distinct cell passes :mod:`~asgdbench.engine.preflight`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
from tqdm import tqdm

from asgdbench.engine.choice import Choice, parse_step, parse_strategy
from asgdbench.engine.plan import configure
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunConfig, RunResult
from asgdbench.errors import ConfigError
from asgdbench.plugins.step_rules import StepSpec
from asgdbench.plugins.workloads import Workload, WorkloadSpec

if TYPE_CHECKING:  # the strategy registry loads numba: not at import (the CLI starts fast)
    from asgdbench.plugins.strategies import StrategySpec


class Executor(Protocol):
    """Runs a grid's cells elsewhere (:class:`asgdbench.study.cluster.Cluster`): it is handed
    this module's functions, so that it never imports the grid."""

    def check_can_run(self, cells: Sequence[RunConfig],
                      check: Callable[[Workload, Sequence[RunConfig]], None]) -> None: ...

    def run_cells(self, cells: Sequence[RunConfig],
                  run: Callable[[Workload, RunConfig], RunResult],
                  on_result: Callable[[RunResult], None], *, progress: object = None) -> None: ...

DEFAULT_WORKLOAD = "mlp-digits"
DEFAULT_STRATEGIES = ("seq", "lock", "hogwild", "leashed:tp=0", "leashed:tp=1", "leashed:tp=inf")
DEFAULT_THREADS = (1, 2, 4, 8)
DEFAULT_REPEATS = 3
INTERLEAVED, BY_STRATEGY = "interleaved", "strategy"
ORDERS = (INTERLEAVED, BY_STRATEGY)
DEFAULT_ORDER_SEED = 0


def expand(
    workload: WorkloadSpec,
    strategies: Sequence[StrategySpec],
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
    steps: Sequence[StepSpec] | None = None,
) -> list[RunConfig]:
    """Every run of the grid, strategy-major, then step rule, repeats (seeds) innermost.

    ``strategies`` and ``steps`` are parsed specs (:func:`parse_specs`; ``steps`` default:
    ``constant`` only). Thread counts a strategy cannot run with (``seq`` beyond 1) are
    skipped; a strategy left with none of the requested counts is an error. ``lrs`` and
    ``batch_size`` default to the workload's.
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, not {repeats}")
    defaults = workload.defaults

    specs, _ = unique(strategies, key=Choice.of)
    step_specs, _ = unique(steps or [parse_step(None)], key=Choice.of)
    threads, _ = unique(threads)
    lrs = unique(lrs)[0] if lrs else lrs
    cells = []
    for spec in specs:
        limit = spec.strategy.max_threads
        counts = [count for count in threads if limit is None or count <= limit]
        if not counts:
            requested = ", ".join(str(count) for count in threads)
            raise ConfigError(f"strategy {spec.name!r} runs with at most {limit} thread(s), "
                              f"not {requested}")
        for step in step_specs:
            for count in counts:
                for lr in lrs or [defaults.lr]:
                    for seed in range(first_seed, first_seed + repeats):
                        config = configure(workload.name, defaults, spec, count, step=step,
                                           lr=lr, batch_size=batch_size, seed=seed,
                                           target_loss=target_loss, max_time=max_time,
                                           max_updates=max_updates, dtype=dtype)
                        cells.append(config)
    return cells


def parse_specs(strategies: Sequence[str | StrategySpec | Choice],
                steps: Sequence[str | StepSpec | Choice] | None = None
                ) -> tuple[list[StrategySpec], list[StepSpec]]:
    """The grid's strategy and step-rule specs parsed, once, where they enter (the CLI, the
    API); an unknown name or bad value fails here, before any work."""
    return ([parse_strategy(spec) for spec in strategies],
            [parse_step(spec) for spec in steps or [None]])


def order_cells(cells: Sequence[RunConfig], order: str = INTERLEAVED,
                order_seed: int = DEFAULT_ORDER_SEED) -> list[RunConfig]:
    """The order a grid runs in.

    ``interleaved``: rounds of one seed each (seed 0's cells, then seed 1's,
    ...), the cells of a round in a shuffled order drawn from ``order_seed``
    and the round's seed, so that a load that drifts during the grid falls on
    every strategy alike and no strategy always runs first. The same cells
    and ``order_seed`` always give the same order, so a resumed grid keeps
    it. ``strategy``: as :func:`expand` lists them (strategy-major, seeds
    innermost).
    """
    if order == BY_STRATEGY:
        return list(cells)
    if order != INTERLEAVED:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    rounds: dict[int, list[RunConfig]] = {}
    for config in cells:
        rounds.setdefault(config.seed, []).append(config)
    ordered = []
    for seed in sorted(rounds):
        rng = np.random.default_rng([order_seed, seed])
        ordered += [rounds[seed][i] for i in rng.permutation(len(rounds[seed]))]
    return ordered


def positions(cells: Sequence[RunConfig], order: str = INTERLEAVED,
              order_seed: int = DEFAULT_ORDER_SEED,
              listed: Sequence[RunConfig] | None = None) -> dict[tuple, dict]:
    """Each cell's ``RunResult.grid_order`` record, by key, for cells already in grid order;
    with ``listed`` (the cells as :func:`expand` lists them) also each cell's place there,
    which the table's rows follow whatever order the runs ran in."""
    places = {config.key(): index for index, config in enumerate(listed or ())}
    records = {}
    for index, config in enumerate(cells):
        record = {"order": order, "order_seed": order_seed, "round": config.seed,
                  "position": index}
        if config.key() in places:
            record["listed"] = places[config.key()]
        records[config.key()] = record
    return records


def unique(values: Sequence, key: Callable = lambda value: value) -> tuple[list, list]:
    """``values`` without repeats, in first-seen order, and the repeated ones.

    Repeating a strategy, thread count or step size would only add same-seed
    repeats of a cell and report them as independent runs.
    """
    kept, seen, repeated = [], set(), []
    for value in values:
        if key(value) in seen:
            repeated.append(value)
        else:
            seen.add(key(value))
            kept.append(value)
    return kept, repeated


def repeated_entries(strategies: Sequence[StrategySpec], threads: Sequence[int],
                     lrs: Sequence[float] | None, steps: Sequence[StepSpec] | None = None
                     ) -> list[str]:
    """What the user listed more than once, as ``--option value`` notes (see :func:`unique`)."""
    notes = [f"--strategies {spec.label}" for spec in unique(strategies, key=Choice.of)[1]]
    notes += [f"--step {spec.label}" for spec in unique(steps or [], key=Choice.of)[1]]
    notes += [f"--threads {count}" for count in unique(threads)[1]]
    notes += [f"--lr {lr:g}" for lr in unique(lrs or [])[1]]
    return notes


STOP_RULES = (("target_loss", "--target-loss"), ("max_time", "--max-time"),
              ("max_updates", "--max-updates"))


def check_resume(cells: Sequence[RunConfig], finished: Sequence[RunResult]) -> None:
    """Refuse to count finished runs as done when the grid asks for other stop rules.

    A run stopped at another time limit, target or budget is not a repeat of
    the cell it shares a key with, so resuming under changed rules would mix
    two studies in one table.
    """
    wanted = {config.key(): config for config in cells}
    for result in finished:
        config = wanted.get(result.config.key())
        if config is None:
            continue
        for name, option in STOP_RULES:
            old, new = getattr(result.config, name), getattr(config, name)
            if old != new:
                raise ConfigError(
                    f"cannot resume: the finished runs used {option} {_rule_text(old)}, this "
                    f"command asks for {_rule_text(new)}; repeat the original options, or "
                    f"choose another --out")


def stop_rule_differences(before: Sequence[RunResult], after: Sequence[RunResult]) -> list[str]:
    """The stop rules two sets of runs used differently, in words ("--max-updates 100 before,
    150000 after"): their losses at the budget, or times cut off by a limit, are not repeats."""
    def used(runs: Sequence[RunResult], name: str) -> str:
        values = {getattr(result.config, name) for result in runs}
        return "/".join(sorted(_rule_text(value) for value in values))

    return [f"{option} {used(before, name)} before, {used(after, name)} after"
            for name, option in STOP_RULES if used(before, name) != used(after, name)]


def _rule_text(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def check_can_run(workload: Workload | None, cells: Sequence[RunConfig], *,
                  cluster: Executor | None = None) -> None:
    """Refuse the grid before its first run if any cell cannot run here (see :mod:`~asgdbench.engine.preflight`).

    Cells that differ only in step size or seed need the same resources, so
    each distinct (strategy, threads, batch size) is checked once. With a
    ``cluster``, every worker checks on its own machine, with its own data.
    """
    if cluster is not None:
        cluster.check_can_run(cells, check_can_run)
        return
    from asgdbench.engine import preflight

    seen = set()
    for config in cells:
        need = (config.strategy, config.threads, config.batch_size)
        if need not in seen:
            seen.add(need)
            preflight.check(workload, parse_strategy(config.strategy), config)


def pending(cells: Sequence[RunConfig], finished: Collection[tuple]) -> list[RunConfig]:
    """The cells whose key is not among the ``finished`` keys."""
    return [config for config in cells if config.key() not in finished]


def run_cell(workload: Workload, config: RunConfig) -> RunResult:
    """Run one cell of a grid on an already loaded workload, as :func:`expand` planned it."""
    from asgdbench.engine.runner import run_planned

    return run_planned(workload, config)


def run_grid(workload: Workload | None, cells: Sequence[RunConfig],
             on_result: Callable[[RunResult], None], *, cluster: Executor | None = None,
             order: dict[tuple, dict] | None = None) -> None:
    """Run the cells one after another, handing each result over as soon as it exists.

    A progress bar with an ETA goes to stderr. Ctrl-C stops the run in progress
    and propagates; every result handed over before it is the caller's. With a
    ``cluster`` (:mod:`~asgdbench.study.cluster`) the cells run as tasks on its
    workers, one per worker at a time, and results arrive as they finish, in
    any order; ``workload`` may then be None (each worker loads its own).
    ``order`` (from :func:`positions`) is written into each result's ``grid_order``.
    """
    def hand_over(result: RunResult) -> None:
        if order and result.config.key() in order:
            result = replace(result, grid_order=order[result.config.key()])
        on_result(result)

    if not cells:  # a resumed grid with nothing left: no empty progress bar
        return
    with tqdm(total=len(cells), unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        if cluster is not None:
            cluster.run_cells(cells, run_cell, hand_over, progress=bar)
            return
        for config in cells:
            bar.set_postfix_str(f"{config.label} threads={config.threads} "
                                f"lr={config.lr:g} seed={config.seed}", refresh=True)
            hand_over(run_cell(workload, config))
            bar.update()
