"""Numba primitives: the bottom layer, which imports nothing else of asgdbench.

Atomics and the OS mutex (:mod:`.atomics`), the start barrier and spin-wait hint
(:mod:`.barrier`), the clock (:mod:`.clock`), per-thread random streams (:mod:`.rng`),
memory that shares no cache line with another thread's (:mod:`.memory`),
test-only gates (:mod:`.gates`), the shared vector steps (:mod:`.steps`) and the codes of the
strategy contract (:mod:`.protocol`). Strategies, step rules and workloads are built from these.

The names a strategy is built from are also here, flat (``asgdbench.primitives.cas``), and
imported on first use: importing one light module (``.protocol``) loads no numba.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_FROM = {
    "atomics": ("cas", "fetch_add", "load", "store", "fence", "cpu_pause", "os_yield",
                "new_mutex", "mutex_lock", "mutex_unlock"),
    "barrier": ("spin_wait_hint",),
    "gates": ("gate",),
    "protocol": ("APPLIED", "DROPPED", "MERGED", "STOP", "ERROR", "NOT_READ", "NEVER",
                 "STOP_FLAG", "MAX_UPDATES"),
    "steps": ("copy_into", "sgd_step_inplace", "sgd_step_into", "rule_step", "retire_nothing",
              "in_type_of", "sparse_step_inplace", "sparse_copy_into", "sparse_step_into"),
}
_EXPORTS = {name: module for module, names in _FROM.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asgdbench.primitives' has no attribute {name!r}")
    value = getattr(import_module(f"asgdbench.primitives.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
