"""Everything a plugin author uses, in one import: ``from asgdbench.api import ...``.

A strategy needs the :class:`Strategy` contract and its registry, the outcome
codes and control cells of :mod:`asgdbench.engine.protocol`, the atomics, the shared
SGD steps and the spin-wait hint; a Leashed-SGD variant needs Leashed's
building blocks (pin, unpin, take a spare, publish, the free list and the
packing of its words), so that it is its differences only; a step rule needs
:class:`StepRule` and its registry (a strategy asks it through
:func:`rule_step`); a workload needs
:class:`WorkloadSpec` and its registry; and :func:`check_strategy` holds either
to the harness's contract. Names here are stable; the modules behind them may
move.
"""

from asgdbench.algorithms import leashed  # the module: make_state, read, retire, cell names
from asgdbench.algorithms.leashed import (
    COUNT_MASK,
    LINE,
    MAX_VERSION,
    NO_SLOT,
    NOT_PINNED,
    SLOT_BITS,
    SLOT_MASK,
    pack,
    pin_latest,
    pop_free,
    push_free,
    take_spare,
    unpin,
)
from asgdbench.engine.atomics import (
    cas,
    cpu_pause,
    fence,
    fetch_add,
    load,
    mutex_lock,
    mutex_unlock,
    new_mutex,
    os_yield,
    store,
)
from asgdbench.engine.barrier import barrier_wait, spin_wait_hint
from asgdbench.engine.protocol import (
    APPLIED,
    DROPPED,
    ERROR,
    MAX_UPDATES,
    MERGED,
    NEVER,
    NOT_READ,
    STOP,
    STOP_FLAG,
)
from asgdbench.engine.steps import (
    copy_into,
    in_type_of,
    retire_nothing,
    rule_step,
    sgd_step_inplace,
    sgd_step_into,
)
from asgdbench.errors import ConfigError, PluginError, UserError
from asgdbench.plugins.files import load_plugin_file
from asgdbench.plugins.step_rules import (
    DEFAULT_STEP,
    StepRule,
    StepSpec,
    parse_step_spec,
    register_step_rule,
)
from asgdbench.plugins.strategies import (
    Param,
    Strategy,
    StrategySpec,
    parse_spec,
    register_strategy,
)
from asgdbench.testing import check_strategy, consistency_stress
from asgdbench.version import __version__
from asgdbench.workloads import Defaults, Workload, WorkloadSpec, register_workload

__all__ = [
    "APPLIED", "COUNT_MASK", "ConfigError", "DEFAULT_STEP", "DROPPED", "Defaults", "ERROR", "LINE", "MAX_UPDATES",
    "MAX_VERSION", "MERGED", "NEVER", "NOT_PINNED", "NOT_READ", "NO_SLOT", "Param", "PluginError",
    "SLOT_BITS", "SLOT_MASK", "STOP", "STOP_FLAG", "Strategy", "StrategySpec", "UserError",
    "Workload", "WorkloadSpec", "__version__", "barrier_wait", "cas", "check_strategy",
    "consistency_stress", "copy_into", "cpu_pause", "fence", "fetch_add", "load",
    "load_plugin_file", "mutex_lock", "mutex_unlock", "new_mutex", "os_yield", "pack",
    "parse_spec", "pin_latest", "pop_free", "push_free", "register_strategy",
    "register_workload", "retire_nothing", "sgd_step_inplace", "sgd_step_into", "spin_wait_hint",
    "store", "take_spare", "unpin", "leashed",
    "StepRule", "StepSpec", "in_type_of", "parse_step_spec", "register_step_rule", "rule_step",
]
