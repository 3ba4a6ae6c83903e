"""The sparse regime in asv: time to target on ``logreg-zipf`` across thread counts.

HOGWILD!'s home ground (issue 22): a sparse workload whose updates touch about 75 of 47,236
coordinates, where HOGWILD!'s sparse path writes only those and Leashed-SGD's publish copies
the whole vector. One :func:`~asgdbench.engine.runner.run` per cell, in ``setup_cache``, as
:mod:`benchmarks.bench_training` runs its grid (whose helpers this shares); each cell also
tracks the parameter bytes one update wrote (declared with the metric in
:mod:`asgdbench.engine.telemetry`). Without ``logreg-zipf`` registered (an
asgdbench before issue 22) every cell is skipped (``n/a``), not failed.
"""

from __future__ import annotations

from typing import Any

from asgdbench.errors import UserError
from asgdbench.plugins.workloads import get_workload, load_workload
from benchmarks import runs_with
from benchmarks.bench_training import (
    RUN_OVERHEAD_S,
    Cell,
    _OneWorkloadTimeToTarget,
    _with_tracks,
    train_cells,
)

SPARSE_WORKLOAD = "logreg-zipf"
SPARSE_STRATEGIES = ("seq", "hogwild", "lock", "leashed:tp=inf")
SPARSE_THREADS = (1, 2, 4, 8)
SPARSE_CELLS = [(SPARSE_WORKLOAD, strategy, threads) for strategy in SPARSE_STRATEGIES
                for threads in SPARSE_THREADS if runs_with(strategy, threads)]


def sparse_timeout(cells: list[Cell]) -> float:
    """An upper bound on training ``cells``, also before the workload exists (then a guess)."""
    try:
        max_time = get_workload(SPARSE_WORKLOAD).defaults.max_time
    except UserError:
        max_time = 30.0
    return len(cells) * (max_time + RUN_OVERHEAD_S)


@_with_tracks("sparse")  # the bytes one update wrote, declared with the metric
class SparseTimeToTarget(_OneWorkloadTimeToTarget):
    """Time to target on ``logreg-zipf``: seq, hogwild, lock and Leashed-SGD, 1-8 threads."""

    params = [[SPARSE_WORKLOAD], list(SPARSE_STRATEGIES), list(SPARSE_THREADS)]

    def setup_cache(self) -> dict[Cell, dict[str, Any]] | str:
        try:
            load_workload(SPARSE_WORKLOAD)
        except UserError as error:
            return str(error)  # not registered here: setup skips every cell
        return train_cells(SPARSE_CELLS)

    setup_cache.timeout = sparse_timeout(SPARSE_CELLS)
