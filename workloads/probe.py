"""The consistency probe: a workload that checks strategies instead of learning.

Every gradient is the same constant ``c`` in every component, and the initial
vector is constant too, so every *consistent* parameter vector has all its
components equal: after ``v`` updates each one is ``x0 - lr * c * v``. The
gradient kernel checks that stamp on every read and counts vectors whose
components disagree (a torn read: a vector seen while being written). With
float64, a power-of-two ``lr`` and ``c``, the arithmetic is exact, so the final
vector also proves that no update was lost.

``probe-sparse`` is the same check on the sparse path: every update's support is the same
fixed subset S of the coordinates (every ``SPARSE_STRIDE``-th), so the vector of version v
is ``-lr * c * v`` on S and 0 off S. Its gradient counts torn reads on S (the only
coordinates a sparse gradient may read); a write off S shows in the final vector.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from asgdbench.plugins.workloads import Defaults, Workload, WorkloadSpec, register_workload
from asgdbench.primitives.atomics import fetch_add

GRADIENT_VALUE = 0.5  # c: a power of two
START_VALUE = 0.0
SPARSE_STRIDE = 8  # probe-sparse: S is every 8th coordinate


@njit(nogil=True, cache=True)
def gradient(params, data, rows, work, grad):
    """Count torn reads of ``params``; the gradient is the constant ``c``."""
    torn_reads, value = data
    first = params[0]
    for i in range(params.shape[0]):
        if params[i] != first:
            fetch_add(torn_reads, 0, 1)
            break
    for i in range(grad.shape[0]):
        grad[i] = value[0]
    return 1.0


def build_probe(spec: WorkloadSpec, *, data_dir: str | None, dtype: np.dtype,
                n_params: int = 4096) -> Workload:
    torn_reads = np.zeros(8, dtype=np.int64)
    value = np.array([GRADIENT_VALUE], dtype=dtype)
    return Workload(
        name=spec.name,
        gradient=gradient,
        train_data=(torn_reads, value),
        n_samples=1,
        n_params=n_params,
        dtype=dtype,
        init_params=lambda seed: np.full(n_params, START_VALUE, dtype=dtype),
        make_workspace=lambda batch_size: (),
        evaluate=lambda params: {"torn_reads": int(torn_reads[0]),
                                 "components_disagree": bool(np.any(params != params[0]))},
        training_loss=lambda params: 1.0,
        defaults=spec.defaults,
        description={"model": "probe", "n_params": n_params, "gradient_value": GRADIENT_VALUE,
                     "dtype": dtype.name},
    )


register_workload(WorkloadSpec(
    name="probe",
    summary="Consistency probe: constant gradient; counts torn reads and lost updates.",
    defaults=Defaults(lr=0.0078125, batch_size=1, target_loss=None, max_time=5.0),
    build=build_probe,
    group="check",
))


@njit(nogil=True, cache=True)
def sparse_support(train_data, rows, workspace, support):
    """The fixed support S, whatever the rows: every update touches the same coordinates."""
    coordinates = train_data[2]
    for k in range(coordinates.shape[0]):
        support[k] = coordinates[k]
    return coordinates.shape[0]


@njit(nogil=True, cache=True)
def sparse_gradient(params, train_data, rows, workspace, support, n_support, values):
    """Count torn reads of ``params`` on the support; the gradient is ``c`` on the support."""
    torn_reads, value = train_data[0], train_data[1]
    first = params[support[0]]
    for k in range(n_support):
        if params[support[k]] != first:
            fetch_add(torn_reads, 0, 1)
            break
    for k in range(n_support):
        values[k] = value[0]
    return 1.0


def build_sparse_probe(spec: WorkloadSpec, *, data_dir: str | None, dtype: np.dtype,
                       n_params: int = 8192, stride: int = SPARSE_STRIDE) -> Workload:
    torn_reads = np.zeros(8, dtype=np.int64)
    value = np.array([GRADIENT_VALUE], dtype=dtype)
    coordinates = np.arange(0, n_params, stride, dtype=np.int64)
    off_support = np.ones(n_params, dtype=bool)
    off_support[coordinates] = False

    def evaluate(params: np.ndarray) -> dict:
        on = params[coordinates]
        return {"torn_reads": int(torn_reads[0]),
                "components_disagree": bool(np.any(on != on[0])),
                "written_off_support": int(np.count_nonzero(params[off_support] != START_VALUE))}

    return Workload(
        name=spec.name,
        gradient=sparse_gradient,
        train_data=(torn_reads, value, coordinates),
        n_samples=1,
        n_params=n_params,
        dtype=dtype,
        init_params=lambda seed: np.full(n_params, START_VALUE, dtype=dtype),
        make_workspace=lambda batch_size: (),
        evaluate=evaluate,
        training_loss=lambda params: 1.0,
        defaults=spec.defaults,
        description={"model": "probe-sparse", "n_params": n_params, "support": coordinates.size,
                     "gradient_value": GRADIENT_VALUE, "dtype": dtype.name},
        sparse=True,
        support=sparse_support,
        max_support=lambda batch_size: coordinates.size,
    )


register_workload(WorkloadSpec(
    name="probe-sparse",
    summary="Consistency probe on the sparse path: constant gradient on a fixed support S; "
            "torn reads on S, lost updates, writes off S.",
    defaults=Defaults(lr=0.0078125, batch_size=1, target_loss=None, max_time=5.0),
    build=build_sparse_probe,
    group="check",
))
