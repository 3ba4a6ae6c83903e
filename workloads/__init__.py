"""Workloads: models, data sets and their named, tuned combinations.

Importing the package registers every named workload (see :mod:`.catalog` and
:mod:`.probe`); look them up with :func:`get_workload` or :func:`load_workload`.
"""

from asgdbench.workloads import catalog, probe  # noqa: E402,F401  (registration)
from asgdbench.workloads.base import (
    WORKLOAD_GROUPS,
    WORKLOADS,
    Defaults,
    Workload,
    WorkloadSpec,
    available_workloads,
    get_workload,
    load_workload,
    register_workload,
    workloads_by_group,
)

__all__ = ["WORKLOAD_GROUPS", "WORKLOADS", "Defaults", "Workload", "WorkloadSpec", "available_workloads",
           "get_workload", "load_workload", "register_workload", "workloads_by_group"]
