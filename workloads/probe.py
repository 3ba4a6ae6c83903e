"""The consistency probe: a workload that checks strategies instead of learning.

Every gradient is the same constant ``c`` in every component, and the initial
vector is constant too, so every *consistent* parameter vector has all its
components equal: after ``v`` updates each one is ``x0 - lr * c * v``. The
gradient kernel checks that stamp on every read and counts vectors whose
components disagree (a torn read: a vector seen while being written). With
float64, a power-of-two ``lr`` and ``c``, the arithmetic is exact, so the final
vector also proves that no update was lost.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from asgdbench.plugins.workloads import Defaults, Workload, WorkloadSpec, register_workload
from asgdbench.primitives.atomics import fetch_add

GRADIENT_VALUE = 0.5  # c: a power of two
START_VALUE = 0.0


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
