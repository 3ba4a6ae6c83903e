"""What the runner trains: a :class:`Workload`, and the registry of named ones.

A workload bundles a gradient kernel with its training data and the defaults
(step size, batch size, convergence target) a run starts from. The runner only
needs this interface, so a workload other than an MLP is one more entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from asgdbench.errors import ConfigError


@dataclass(frozen=True)
class Defaults:
    """Where a run on this workload starts unless told otherwise."""

    lr: float
    batch_size: int
    target_loss: float | None
    max_time: float


@dataclass(frozen=True, eq=False)
class Workload:
    """A model and its data, ready for the worker loop.

    ``gradient(params, train_data, rows, workspace, grad) -> loss`` is an
    ``@njit(nogil=True)`` kernel; ``evaluate(params)`` returns held-out metrics
    (``test_loss``, ``test_accuracy``) and ``training_loss(params)`` the loss the
    divergence rule compares against.
    """

    name: str
    gradient: Any
    train_data: tuple
    n_samples: int
    n_params: int
    dtype: np.dtype
    init_params: Callable[[int], np.ndarray]
    make_workspace: Callable[[int], tuple]
    evaluate: Callable[[np.ndarray], dict[str, float]]
    training_loss: Callable[[np.ndarray], float]
    defaults: Defaults
    description: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadSpec:
    """A named workload: defaults to list, and how to build it (loading its data)."""

    name: str
    summary: str
    defaults: Defaults
    build: Callable[..., Workload]

    def load(self, data_dir: str | None = None, dtype: str = "float32") -> Workload:
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, not {dtype!r}")
        return self.build(self, data_dir=data_dir, dtype=np.dtype(dtype))


_WORKLOADS: dict[str, WorkloadSpec] = {}


def register_workload(spec: WorkloadSpec) -> WorkloadSpec:
    _WORKLOADS[spec.name] = spec
    return spec


def available_workloads() -> dict[str, WorkloadSpec]:
    return dict(sorted(_WORKLOADS.items()))


def get_workload(name: str) -> WorkloadSpec:
    if name not in _WORKLOADS:
        raise ConfigError(f"unknown workload {name!r} (valid: {', '.join(sorted(_WORKLOADS))})")
    return _WORKLOADS[name]


def load_workload(name: str, data_dir: str | None = None, dtype: str = "float32") -> Workload:
    """Build the named workload, loading its data set."""
    return get_workload(name).load(data_dir=data_dir, dtype=dtype)
