"""asgdbench: how shared-memory synchronization shapes asynchronous parallel SGD.

The one public face, for scripts, notebooks and plugin files (the README and CONTRIBUTING.md
show examples)::

    import asgdbench
    result = asgdbench.run("mlp-digits", "leashed:tp=inf", threads=4)
    result.status, result.time_to_target_s, result.to_dict()

A plugin file imports only this: the registries and their types, the checks a plugin is held
to, and three namespaces of building blocks: :mod:`asgdbench.primitives` (atomics, vector
steps, the contract's codes), :mod:`asgdbench.leashed` (Leashed-SGD's composable kernels, for
variants) and :mod:`asgdbench.network` (the layers workloads build networks from).
Everything else stays importable from its module, but is not promised to stay put.

Names are imported on first use, so that importing one light module (say
``asgdbench.errors``) does not load numba and the engine with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from asgdbench.version import __version__  # noqa: F401  (light: no numba)

_EXPORTS = {
    # running and reading runs
    "run": "asgdbench.engine.runner",
    "RunConfig": "asgdbench.engine.run_result",
    "RunResult": "asgdbench.engine.run_result",
    "ResultStore": "asgdbench.study.result_folder",
    "summarize": "asgdbench.study.report",
    "render": "asgdbench.study.report",
    # strategies
    "Strategy": "asgdbench.plugins.strategies",
    "Param": "asgdbench.plugins.params",
    "register_strategy": "asgdbench.plugins.strategies",
    "available_strategies": "asgdbench.plugins.strategies",
    # step rules
    "StepRule": "asgdbench.plugins.step_rules",
    "register_step_rule": "asgdbench.plugins.step_rules",
    "available_step_rules": "asgdbench.plugins.step_rules",
    # workloads
    "WorkloadSpec": "asgdbench.plugins.workloads",
    "Workload": "asgdbench.plugins.workloads",
    "Defaults": "asgdbench.plugins.workloads",
    "register_workload": "asgdbench.plugins.workloads",
    "available_workloads": "asgdbench.plugins.workloads",
    "load_workload": "asgdbench.plugins.workloads",
    "build_network": "asgdbench.workloads.catalog",
    "load_plugin_file": "asgdbench.plugins.files",
    # the checks a plugin is held to
    "check_strategy": "asgdbench.engine.checks",
    "check_step_rule": "asgdbench.engine.step_rule_checks",
    "check_workload": "asgdbench.engine.workload_checks",
    "consistency_stress": "asgdbench.engine.consistency",
    # errors a user can cause
    "UserError": "asgdbench.errors",
    "ConfigError": "asgdbench.errors",
}
_NAMESPACES = {
    "primitives": "asgdbench.primitives",
    "leashed": "asgdbench.algorithms.leashed",
    "network": "asgdbench.workloads.network",
}

__all__ = sorted([*_EXPORTS, *_NAMESPACES])


def __getattr__(name: str) -> Any:
    if name in _NAMESPACES:
        value = import_module(_NAMESPACES[name])
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'asgdbench' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
