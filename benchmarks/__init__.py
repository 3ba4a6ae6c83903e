"""asv benchmarks for asgdbench: the grid they run and the switch that sizes it.

``bench_training`` trains every cell of a workload x strategy x threads grid
once, through :func:`asgdbench.engine.runner.run`, and tracks what each run reports;
``bench_kernels`` times the per-step kernels alone. Both read their grid from
here, so a scale is one entry of :data:`SCALES`. Set ``ASGDBENCH_ASV_SCALE``
to pick one (``default`` when unset); see README.md.

Only modules whose names start with ``bench_`` hold benchmarks; the folder
``scripts/`` has no ``__init__.py``, so asv's discovery never imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asgdbench.plugins.strategies import parse_spec

SCALE_VARIABLE = "ASGDBENCH_ASV_SCALE"

STRATEGY_SPECS = ("seq", "lock", "hogwild", "leashed:tp=0", "leashed:tp=1", "leashed:tp=inf",
                  "sync")
"""The strategies the paper compares; Leashed-SGD at three persistence bounds."""


@dataclass(frozen=True)
class Scale:
    """One size of the suite: which workloads, strategy specs and thread counts it runs."""

    workloads: tuple[str, ...]
    strategies: tuple[str, ...]
    threads: tuple[int, ...]


SCALES = {
    # 25 runs on 8x8 digits: about a minute on 2 cores, 20 s at most per run.
    "default": Scale(("mlp-digits",), STRATEGY_SPECS, (1, 2, 4, 8)),
    # The paper's MNIST network with up to 32 threads; needs the MNIST files
    # (ASGDBENCH_DATA) and a machine with that many cores to mean anything.
    "paper": Scale(("mlp-mnist",), STRATEGY_SPECS, (1, 2, 4, 8, 16, 32)),
}


def current_scale() -> Scale:
    """The scale ``ASGDBENCH_ASV_SCALE`` names; an unknown name fails discovery loudly."""
    name = os.environ.get(SCALE_VARIABLE, "").strip() or "default"
    if name not in SCALES:
        raise ValueError(f"{SCALE_VARIABLE}={name!r} is not a scale (valid: {', '.join(SCALES)})")
    return SCALES[name]


def runs_with(strategy_spec: str, threads: int) -> bool:
    """Whether the strategy can run with that many threads (SEQ runs with one only)."""
    limit = parse_spec(strategy_spec).strategy.max_threads
    return limit is None or threads <= limit
