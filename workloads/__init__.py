"""Built-in workloads: models, data sets and their named, tuned combinations.

The named workloads (:mod:`.catalog` and :mod:`.probe`) register with the workload registry
(:mod:`asgdbench.plugins.workloads`) when it is first asked, not at import, so that importing
this package loads nothing (numba included).
"""
