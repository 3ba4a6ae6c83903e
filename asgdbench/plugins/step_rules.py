"""The step-rule registry: how big a step one apply takes, given its staleness.

A step rule turns the base step ``lr`` into the step of one apply from that
apply's staleness τ (updates published between the read its gradient was
computed on and the apply). It is the second plugin axis: every strategy runs
with every rule, so a staleness-adaptive step is a few lines, not a copy of a
strategy's ``update``. Built-ins live in ``algorithms/step_rules/``, one file
each; others arrive through the entry-point group ``asgdbench.steps`` or a
``--plugin`` file. A spec picks a rule and its parameters, like a strategy's:
``inverse``, ``tail:amplitude=0.5``. A run's label, ``STRATEGY+RULE`` with every
parameter shown and the default rule ``constant`` left out, is made from the typed plan
alone (:func:`asgdbench.engine.choice.run_label`), so it is the same whichever plugins are
loaded.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from asgdbench.errors import ConfigError, PluginError
from asgdbench.plugins.params import (
    BoundSpec,
    Param,
    bind,
    find_param,
    make_state_problem,
    split_spec,
)
from asgdbench.plugins.registry import Registry, import_package_modules

ENTRY_POINT_GROUP = "asgdbench.steps"
DEFAULT_STEP = "constant"


def _nothing_to_report(rule_state: tuple) -> dict[str, Any]:
    return {}


SCALARS = (bool, int, float, np.bool_, np.integer, np.floating)
"""What a rule state's named fields may hold besides arrays: per-run constants."""


def _is_named_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def check_rule_state(rule_state: Any, rule_name: str) -> tuple:
    """Refuse a state the kernels cannot share between threads.

    It is a tuple of NumPy arrays (shared, mutable: what the threads update), or a
    ``typing.NamedTuple`` of arrays and scalars (a scalar is a per-run constant, such as
    FLEET's β: every call gets it by value). numba copies a Python list into each call, so
    per-run state in one would silently become per-call state; a bare scalar in a plain tuple
    is refused too, so that a constant always has a name.
    """
    allowed = (np.ndarray, *SCALARS) if _is_named_tuple(rule_state) else (np.ndarray,)
    if not isinstance(rule_state, tuple) or not all(
            isinstance(item, allowed) for item in rule_state):
        kind = type(rule_state).__name__
        raise PluginError(f"step rule {rule_name!r}: make_state must return a tuple of NumPy "
                          f"arrays (shared by the threads) or a NamedTuple of arrays and "
                          f"scalars, not {kind}"
                          + (" holding other things" if isinstance(rule_state, tuple) else ""))
    return rule_state


@dataclass(frozen=True)
class StepRule:
    """A step-size rule: per-run state plus one kernel that gives the step of one apply.

    - ``make_state(n_threads, **params) -> rule_state`` (plain Python, once per run): a
      ``typing.NamedTuple`` declared at module top level whose fields are scalars (the
      rule's parameters, constants of the run: ``beta: float``) and arrays (what the
      threads update: a warm-up's histogram), or a plain tuple of arrays (``()`` for none);
    - ``step(lr, staleness, tid, rule_state) -> step``: an ``@njit(nogil=True)``
      kernel called by the strategy at apply time (under its lock, per CAS
      attempt, ...), with the base step ``lr`` and that apply's staleness τ
      (an int64 >= 0). It may update its state (per-thread cells, or
      :mod:`asgdbench.primitives.atomics` for shared ones); it must not allocate.
      Its result is cast to ``lr``'s type by :func:`asgdbench.primitives.steps.rule_step`.

    - ``inspect(rule_state) -> dict``: what the rule's state says once the
      threads are gone, JSON-ready, recorded in the result's ``step_rule``
      (``tail``: whether its warm-up completed; default: nothing).

    ``params`` are typed :class:`Param`s, bound from the spec string and
    passed to ``make_state``. The docstring (``doc``) is the rule's help.
    """

    name: str
    summary: str
    make_state: Callable[..., tuple]
    step: Any
    params: tuple[Param, ...] = ()
    inspect: Callable[[tuple], dict[str, Any]] = _nothing_to_report
    doc: str = field(default="", compare=False)

    def param(self, name: str) -> Param:
        return find_param(self.params, name, f"step rule {self.name!r}")


@dataclass(frozen=True)
class StepSpec(BoundSpec):
    """A step rule with every parameter bound, as parsed from a spec string."""

    rule: StepRule
    values: tuple[tuple[str, Any], ...]

    @property
    def plugin(self) -> StepRule:
        return self.rule

    def make_state(self, n_threads: int) -> tuple:
        return self.rule.make_state(n_threads, **self.kwargs)


_STEP_ARITY = 4  # step(lr, staleness, tid, rule_state)


def _check(rule: StepRule, where: str) -> None:
    """Refuse a rule the strategies could not call, before anything compiles."""
    def fail(problem: str) -> None:
        raise PluginError(f"step rule {rule.name!r} from {where}: {problem}")

    python = getattr(rule.step, "py_func", None)
    if python is None:
        fail(f"step must be an @njit(nogil=True) kernel, not {type(rule.step).__name__}")
    arity = len(inspect.signature(python).parameters)
    if arity != _STEP_ARITY:
        fail(f"step must take {_STEP_ARITY} arguments (lr, staleness, tid, rule_state), "
             f"not {arity}")
    problem = make_state_problem(rule.make_state, rule.params, ("n_threads",))
    if problem:
        fail(problem)
    if not callable(rule.inspect):
        fail("inspect must be a function")

STEP_RULES: Registry[StepRule] = Registry(
    "step rule", ENTRY_POINT_GROUP, _check,
    defined_in=lambda rule: getattr(rule.make_state, "__module__", "") or "",
    builtins=lambda: import_package_modules("asgdbench.algorithms.step_rules"),
    builtin_prefix="asgdbench.algorithms.step_rules.",
)


def register_step_rule(rule: StepRule) -> StepRule:
    """Add ``rule`` to the registry, after checking it; a name is taken once.

    The built-ins are discovered first, so that a plugin file naming its rule
    ``inverse`` is refused at once rather than breaking the built-in later.
    Raises :class:`PluginError` naming the rule and its source.
    """
    STEP_RULES.discover()
    return STEP_RULES.register(rule)


def available_step_rules() -> dict[str, StepRule]:
    """Every registered step rule by name: built-ins, entry points and loaded plugins."""
    return STEP_RULES.available()


def step_rule_source(name: str) -> dict[str, Any]:
    """Where step rule ``name`` came from: built-in, a plugin file, an entry point."""
    return STEP_RULES.source(name)


def parse_step_spec(spec: str | StepSpec | None) -> StepSpec:
    """Parse ``name:p1=v1``; None is the default rule; unset parameters take their defaults."""
    if isinstance(spec, StepSpec):
        return spec
    name, given = split_spec(DEFAULT_STEP if spec is None else spec)
    if not name:
        raise ConfigError(f"empty step rule spec {spec!r} (valid: "
                          f"{', '.join(available_step_rules())})")
    rule = STEP_RULES.get(name)
    return StepSpec(rule, bind(rule.params, given, f"step rule {name!r}"))
