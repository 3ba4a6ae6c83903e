"""The strategy registry: names, typed parameter schemas and spec strings.

A synchronization strategy is a small bundle of numba kernels plus a shared-state
constructor (see :class:`Strategy`). Built-ins live in ``algorithms/``, one file
each; third-party ones arrive through the entry-point group
``asgdbench.algorithms`` or a drop-in file passed to :func:`load_plugin_file`.
A spec string picks a strategy and its parameters: ``leashed:tp=inf``,
``lock``, ``name:p1=v1:p2=v2``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import pkgutil
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

import numpy as np

from asgdbench.errors import ConfigError
from asgdbench.steps import retire_nothing

ENTRY_POINT_GROUP = "asgdbench.algorithms"


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _parse_int_or_inf(text: str) -> int | float:
    return math.inf if text.lower() in ("inf", "infinity") else int(text)


_CONVERTERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "int": (int, "an integer"),
    "int_or_inf": (_parse_int_or_inf, "an integer or inf"),
    "float": (float, "a number"),
    "bool": (_parse_bool, "true or false"),
}


@dataclass(frozen=True)
class Param:
    """One typed, documented parameter of a strategy.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"`` or ``"int_or_inf"`` (an
    integer, or ``inf`` for "unbounded").
    """

    name: str
    kind: str
    default: Any
    doc: str
    minimum: float | None = None

    def parse(self, text: str) -> Any:
        """Turn the text of a spec value into a checked Python value."""
        value = self._convert(text.strip())
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"parameter {self.name}={text} must be >= {self.minimum:g}")
        return value

    def _convert(self, text: str) -> Any:
        converter, expected = _CONVERTERS[self.kind]
        try:
            return converter(text)
        except ValueError:
            raise ConfigError(f"parameter {self.name}={text!r} is not {expected}") from None

    def format(self, value: Any) -> str:
        """The canonical spec text of ``value``."""
        if value == math.inf:
            return "inf"
        if isinstance(value, bool):
            return "true" if value else "false"
        return f"{value:g}" if isinstance(value, float) else str(value)


def _first_array(state: tuple) -> np.ndarray:
    """By convention a strategy's parameter vector is the first array of its state."""
    return state[0]


def _one_vector(state: tuple, n_threads: int) -> int:
    return 1


def _nothing_to_inspect(state: tuple) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Strategy:
    """A synchronization strategy: shared state plus the kernels that touch it.

    The harness owns threads, minibatch sampling, the gradient, timing and
    telemetry; a strategy only says how a thread gets parameters to compute on
    and how it applies a gradient. Kernels are ``@njit(nogil=True)`` functions:

    - ``make_state(init_params, n_threads, **params) -> tuple of arrays``
      (plain Python, runs once before the threads start);
    - ``read(state, tid) -> (params_view, token)``: the vector to compute the
      gradient on, and an int64 the strategy gets back in ``update``;
    - ``update(state, tid, token, grad, lr, max_updates) -> (outcome, staleness, attempts)``
      with ``outcome`` one of the codes in :mod:`asgdbench.outcomes`;
    - ``retire(state, tid)``: give back what the thread still holds, at exit
      (default: nothing to give back);
    - ``final_params(state) -> ndarray`` and ``peak_param_vectors(state, n_threads) -> int``
      (plain Python, after the run; defaults: ``state[0]``, and one vector);
    - ``inspect(state) -> dict``: invariants worth reporting once the threads are
      gone (Leashed-SGD: its free list and latest version), JSON-ready.
    """

    name: str
    summary: str
    make_state: Callable[..., tuple]
    read: Any
    update: Any
    retire: Any = retire_nothing
    final_params: Callable[[tuple], np.ndarray] = _first_array
    peak_param_vectors: Callable[[tuple, int], int] = _one_vector
    inspect: Callable[[tuple], dict[str, Any]] = _nothing_to_inspect
    params: tuple[Param, ...] = ()
    uses_cas: bool = False
    max_threads: int | None = None
    doc: str = field(default="", compare=False)

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        valid = ", ".join(p.name for p in self.params) or "none"
        raise ConfigError(f"strategy {self.name!r} has no parameter {name!r} (valid: {valid})")


@dataclass(frozen=True)
class StrategySpec:
    """A strategy with every parameter bound, as parsed from a spec string."""

    strategy: Strategy
    values: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def label(self) -> str:
        """Canonical spec string: the name, then every parameter, in schema order."""
        parts = [self.strategy.name]
        parts += [f"{n}={self.strategy.param(n).format(v)}" for n, v in self.values]
        return ":".join(parts)

    def __str__(self) -> str:
        return self.label


_STRATEGIES: dict[str, Strategy] = {}
_builtins_loaded = False


def register_strategy(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to the registry; a later registration of a name replaces it."""
    if not strategy.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"strategy name {strategy.name!r} must be alphanumeric (with - or _)")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def _load_builtins_and_entry_points() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import asgdbench.algorithms as builtin

    for module in pkgutil.iter_modules(builtin.__path__):
        importlib.import_module(f"{builtin.__name__}.{module.name}")
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()


def available_strategies() -> dict[str, Strategy]:
    """Every registered strategy by name: built-ins, entry points and loaded plugins."""
    _load_builtins_and_entry_points()
    return dict(sorted(_STRATEGIES.items()))


def get_strategy(name: str) -> Strategy:
    strategies = available_strategies()
    if name not in strategies:
        raise ConfigError(f"unknown strategy {name!r} (valid: {', '.join(strategies)})")
    return strategies[name]


def parse_spec(spec: str | StrategySpec) -> StrategySpec:
    """Parse ``name:p1=v1:p2=v2``; unset parameters take their defaults."""
    if isinstance(spec, StrategySpec):
        return spec
    name, *assignments = spec.strip().split(":")
    strategy = get_strategy(name.strip())
    given: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad parameter {assignment!r} in {spec!r}: write name=value")
        param = strategy.param(key.strip())
        given[param.name] = param.parse(text)
    values = tuple((p.name, given.get(p.name, p.default)) for p in strategy.params)
    return StrategySpec(strategy, values)


def load_plugin_file(path: str | Path) -> None:
    """Execute a drop-in strategy file, which registers itself on import."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"plugin file {str(path)!r} does not exist")
    _load_builtins_and_entry_points()  # so that a plugin may replace a built-in
    module_name = f"asgdbench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin file {str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
