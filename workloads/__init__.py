"""Workloads: models, data sets and their named, tuned combinations.

Importing the package registers every named workload (see :mod:`.catalog` and
:mod:`.probe`); look them up with :func:`get_workload` or :func:`load_workload`.
"""

from asgdbench.workloads.base import (
    Defaults,
    Workload,
    WorkloadSpec,
    available_workloads,
    get_workload,
    load_workload,
    register_workload,
)
from asgdbench.workloads import catalog, probe  # noqa: E402,F401  (registration)

__all__ = ["Defaults", "Workload", "WorkloadSpec", "available_workloads", "get_workload",
           "load_workload", "register_workload"]
