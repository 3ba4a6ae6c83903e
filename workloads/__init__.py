"""Workloads: models, data sets and their named, tuned combinations.

The named workloads (:mod:`.catalog` and :mod:`.probe`) register when the registry is
first asked (:func:`available_workloads`, :func:`get_workload`, :func:`load_workload`), not
at import, so that importing the package does not load numba.
"""

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
