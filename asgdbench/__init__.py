"""asgdbench: how shared-memory synchronization shapes asynchronous parallel SGD.

The Python API, for scripts and notebooks (the README shows an example)::

    import asgdbench
    result = asgdbench.run("mlp-digits", "leashed:tp=inf", threads=4)
    result.status, result.time_to_target_s, result.to_dict()

Names are imported on first use, so that importing one light module (say
``asgdbench.errors``) does not load numba and the engine with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from asgdbench.version import __version__  # noqa: F401  (light: no numba)

_EXPORTS = {
    "run": "asgdbench.engine.runner",
    "RunResult": "asgdbench.engine.run_result",
    "RunConfig": "asgdbench.engine.run_result",
    "summarize": "asgdbench.study.report",
    "render": "asgdbench.study.report",
    "ResultStore": "asgdbench.study.result_folder",
    "available_strategies": "asgdbench.plugins.strategies",
    "register_strategy": "asgdbench.plugins.strategies",
    "Strategy": "asgdbench.plugins.strategies",
    "Param": "asgdbench.plugins.strategies",
    "available_workloads": "asgdbench.workloads",
    "load_workload": "asgdbench.workloads",
    "UserError": "asgdbench.errors",
    "ConfigError": "asgdbench.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asgdbench' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
