"""Training runs: time and updates to the target loss, throughput, staleness, contention, memory.

Every figure here comes from one :func:`asgdbench.engine.runner.run` per grid cell
(workload x strategy spec x threads, seed 0, the workload's default step size,
batch size, target loss and ``max_time``). The runs happen once, in the shared
``setup_cache``: asv keys that cache by where the function is defined, so all
classes below share one set of runs, and each ``track_*`` only reads its figure
from the cell's :meth:`~asgdbench.engine.run_result.RunResult.to_dict`. The telemetry
tracks of :class:`Execution` and :class:`Contention` are built from their declaration
(:func:`asgdbench.engine.telemetry.tracks`); the convergence tracks are declared here. Numba compiles
inside ``run`` before its clock starts, so no figure includes compilation.

A figure a run did not produce (no target reached, no update applied) is NaN,
which asv shows as ``n/a``; a cell whose run raised fails with that error.
:class:`CnnTimeToTarget` adds the convolutional workload ``cnn-fashion`` at every scale,
with its own small grid and its own runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from asgdbench.engine.run_result import RunResult
from asgdbench.engine.runner import run
from asgdbench.engine.telemetry import Telemetry, Track, tracks
from asgdbench.errors import DataError
from asgdbench.plugins.workloads import get_workload, load_workload
from benchmarks import Scale, current_scale, runs_with

SEED = 0
RUN_OVERHEAD_S = 30.0
"""Per run, on top of its ``max_time``: loading, compiling and evaluating (generous)."""

Cell = tuple[str, str, int]
"""(workload, strategy spec, threads): one run of the grid."""


def grid_cells(scale: Scale) -> list[Cell]:
    """Every cell of the scale's grid that can run (SEQ only with one thread)."""
    return [(workload, strategy, threads)
            for workload in scale.workloads
            for strategy in scale.strategies
            for threads in scale.threads
            if runs_with(strategy, threads)]


def grid_timeout(cells: list[Cell]) -> float:
    """An upper bound on training ``cells``: each run stops at its workload's ``max_time``."""
    return sum(get_workload(workload).defaults.max_time + RUN_OVERHEAD_S
               for workload, _, _ in cells)


def train_cells(cells: list[Cell], **run_options: Any) -> dict[Cell, dict[str, Any]]:
    """Run each cell once; its result dict, or ``{"raised": message}`` if the run raised.

    An error stays with its cell, so one broken strategy fails its own
    benchmarks and leaves the rest of the grid measured.
    """
    workloads = {name: load_workload(name) for name in dict.fromkeys(w for w, _, _ in cells)}
    results: dict[Cell, dict[str, Any]] = {}
    for workload, strategy, threads in cells:
        try:
            result = run(workloads[workload], strategy, threads, seed=SEED, **run_options)
        except Exception as error:  # re-raised by the cell's setup
            results[(workload, strategy, threads)] = {"raised": f"{type(error).__name__}: {error}"}
        else:
            results[(workload, strategy, threads)] = result.to_dict()
    return results


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


SCALE = current_scale()
CELLS = grid_cells(SCALE)


class _TrainingGrid:
    """The grid's parameters, its one ``setup_cache``, and the cell lookup in ``setup``."""

    params = [list(SCALE.workloads), list(SCALE.strategies), list(SCALE.threads)]
    param_names = ["workload", "strategy", "threads"]
    timeout = 60.0  # a figure is read from the cache: seconds, not minutes

    def setup_cache(self) -> dict[Cell, dict[str, Any]]:
        return train_cells(CELLS)

    setup_cache.timeout = grid_timeout(CELLS)

    def setup(self, results: dict[Cell, dict[str, Any]], workload: str, strategy: str,
              threads: int) -> None:
        if not runs_with(strategy, threads):
            raise NotImplementedError(f"{strategy} does not run with {threads} threads")
        self.result = results[(workload, strategy, threads)]
        problem = self.result.get("raised") or (self.result["status"] == "error"
                                                 and self.result.get("error"))
        if problem:  # the run raised, or ended invalid (a stuck thread, a broken invariant)
            raise RuntimeError(f"the run of {strategy} with {threads} threads on {workload} "
                               f"failed: {problem}")
        self.record = RunResult.from_dict(self.result)


def declared_track_methods(group: str, telemetry: Sequence[Telemetry] | None = None
                           ) -> dict[str, Callable[..., float]]:
    """A ``track_<name>`` method per declared telemetry track of ``group``, as asv collects
    them: the cell's value, NaN where its run has none."""
    return {f"track_{track.name}": _track_method(track) for track in tracks(group, telemetry)}


def _track_method(track: Track) -> Callable[..., float]:
    def method(self, results, workload, strategy, threads) -> float:
        return _or_nan(track.read(self.record))

    method.__name__ = method.__qualname__ = f"track_{track.name}"
    method.__doc__ = track.description
    method.unit = track.unit
    return method


def _with_tracks(group: str) -> Callable[[type], type]:
    """Class decorator: add the declared tracks of ``group`` to a benchmark class."""
    def add(cls: type) -> type:
        for name, method in declared_track_methods(group).items():
            setattr(cls, name, method)
        return cls
    return add


class Convergence(_TrainingGrid):
    """How fast the smoothed training loss reaches the workload's target (the headline)."""

    def track_time_to_target(self, results, workload, strategy, threads) -> float:
        """Seconds from the start barrier until the target was reached; NaN if never."""
        return _or_nan(self.result["time_to_target_s"])

    track_time_to_target.unit = "seconds"

    def track_updates_to_target(self, results, workload, strategy, threads) -> float:
        """Updates applied until the target was reached (statistical efficiency); NaN if never."""
        return _or_nan(self.result["steps_to_target"])

    track_updates_to_target.unit = "updates"


@_with_tracks("execution")
class Execution(_TrainingGrid):
    """What the run cost while it lasted: throughput, staleness, memory (the declared tracks)."""


@_with_tracks("contention")
class Contention(_TrainingGrid):
    """Failed compare-and-swaps, for the strategies that publish by CAS."""

    def setup(self, results, workload, strategy, threads) -> None:
        super().setup(results, workload, strategy, threads)
        if all(track.read(self.record) is None for track in tracks("contention")):
            raise NotImplementedError(f"{strategy} publishes without CAS")


CNN_WORKLOAD = "cnn-fashion"
CNN_STRATEGIES = ("seq", "lock", "hogwild", "leashed:tp=inf")
CNN_THREADS = (1, 2, 4, 8)
CNN_CELLS = [(CNN_WORKLOAD, strategy, threads) for strategy in CNN_STRATEGIES
             for threads in CNN_THREADS if runs_with(strategy, threads)]


class _OneWorkloadTimeToTarget(_TrainingGrid):
    """Time to target on one workload that may be missing here: its ``setup_cache`` returns
    the reason (a string) instead of results, and every cell is then skipped (``n/a``), not
    failed. (Each subclass keeps its own ``setup_cache``: asv keys the cache by its source.)"""

    def setup(self, results, workload, strategy, threads) -> None:
        if isinstance(results, str):
            raise NotImplementedError(results)
        super().setup(results, workload, strategy, threads)

    def track_time_to_target(self, results, workload, strategy, threads) -> float:
        """Seconds from the start barrier until the target was reached; NaN if never."""
        return _or_nan(self.result["time_to_target_s"])

    track_time_to_target.unit = "seconds"


class CnnTimeToTarget(_OneWorkloadTimeToTarget):
    """Time to target on ``cnn-fashion`` across thread counts, whatever the scale.

    Needs Fashion-MNIST under ``$ASGDBENCH_DATA`` (``asgdbench download fashion-mnist``);
    without it every cell is skipped (``n/a``), not failed.
    """

    params = [[CNN_WORKLOAD], list(CNN_STRATEGIES), list(CNN_THREADS)]

    def setup_cache(self) -> dict[Cell, dict[str, Any]] | str:
        try:
            load_workload(CNN_WORKLOAD)
        except DataError as error:
            return str(error)  # no data: setup skips every cell
        return train_cells(CNN_CELLS)

    setup_cache.timeout = grid_timeout(CNN_CELLS)
