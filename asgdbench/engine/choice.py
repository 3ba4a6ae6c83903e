"""A spec, parsed once: which strategy and step rule a run uses, as typed values.

A spec string (``leashed:tp=inf``, ``tail:amplitude=0.5``) is parsed where it enters:
the command line, :func:`asgdbench.run`'s arguments, a result file. From then on the
spec travels as a :class:`Choice` (a plugin's name and every parameter's value):
the grid, the pre-run checks, the runner and a cluster's workers take them, and the
claims and the report select runs by their fields, never by a label's text.

A run's identity and its label are computed from the plan alone, so they are the same
whichever plugins the reading process has loaded:

- a :class:`Choice`'s label is its canonical spec: the name, then *every* parameter in
  the plugin's schema order, each value written as :func:`format_value` writes it;
- a run's label (:func:`run_label`) is the strategy's label, then ``+`` and the step
  rule's label, except that the default rule ``constant`` (which has no parameters) is
  left out: ``lock``, ``leashed:tp=inf+inverse``, ``lock+tail:amplitude=1:warmup_from=10:...``.
  No parameter is hidden at its default: which value is a default is the plugin's
  knowledge, and a label must not change with the plugins loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgdbench.errors import ConfigError
from asgdbench.plugins.params import BoundSpec, Param, find_param, split_spec
from asgdbench.plugins.step_rules import DEFAULT_STEP, STEP_RULES, StepSpec, parse_step_spec

if TYPE_CHECKING:  # the strategy registry loads numba: not at import (the CLI starts fast)
    from asgdbench.plugins.strategies import StrategySpec

LABEL_SEPARATOR = "+"
"""Between the strategy and the step rule in a run's label: ``lock+inverse``."""


def format_value(value: Any) -> str:
    """A parameter value as a canonical spec writes it (``inf``, ``true``, ``0.5``, ``3``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if value == math.inf else f"{value:g}"
    return str(value)


def read_value(text: str) -> Any:
    """A value of a canonical spec, typed without its plugin's schema (the inverse of
    :func:`format_value` up to int/float: ``1`` reads as 1 whether the parameter is an int
    or a float, and compares equal either way)."""
    lowered = text.strip().lower()
    if lowered in ("inf", "infinity"):
        return math.inf
    if lowered in ("-inf", "-infinity"):
        return -math.inf
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = int(lowered)
        if str(number) == lowered:  # "-0" is the float -0.0, which a spec tells from 0
            return number
    except ValueError:
        pass
    try:
        return float(lowered)
    except ValueError:
        return text.strip()


@dataclass(frozen=True, eq=False)
class Choice:
    """A plugin chosen by name with every parameter bound: the typed form of a spec.

    Two choices are equal when their canonical labels are (so ``tp=0`` and ``tp=0.0``
    are one choice, ``-0`` and ``0`` are two, as the spec strings are).
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, spec: BoundSpec) -> "Choice":
        """The choice a parsed spec (a plugin with bound values) makes."""
        return cls(spec.name, tuple(spec.values))

    @classmethod
    def from_label(cls, text: str) -> "Choice":
        """Read a canonical label (as result files hold it) without the plugin's registry."""
        name, pairs = split_spec(text)
        if not name:
            raise ConfigError(f"empty spec {text!r}")
        return cls(name, tuple((key, read_value(value)) for key, value in pairs))

    @property
    def label(self) -> str:
        """The canonical spec: the name, then every parameter, ``name:p=v:q=w``."""
        return ":".join([self.name, *(f"{key}={format_value(value)}"
                                      for key, value in self.params)])

    def get(self, name: str, default: Any = None) -> Any:
        """The value of parameter ``name`` (``default`` if the choice has none by that name)."""
        return dict(self.params).get(name, default)

    def is_(self, name: str, **params: Any) -> bool:
        """Whether this is plugin ``name`` with (at least) these parameter values."""
        return self.name == name and all(
            format_value(self.get(key)) == format_value(value) for key, value in params.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and other.label == self.label

    def __hash__(self) -> int:
        return hash(self.label)

    def __str__(self) -> str:
        return self.label


CONSTANT = Choice(DEFAULT_STEP)
"""The default step rule: every apply takes ``lr``."""


def as_choice(value: "str | Choice | BoundSpec | None", default: Choice | None = None) -> Choice:
    """A choice from a canonical label, a parsed spec, or a choice (None: ``default``)."""
    if value is None and default is not None:
        return default
    if isinstance(value, Choice):
        return value
    if isinstance(value, BoundSpec):
        return Choice.of(value)
    if isinstance(value, str):
        return Choice.from_label(value)
    raise ConfigError(f"expected a spec, not {value!r}")


def run_label(strategy: Choice, step: Choice) -> str:
    """A run's label: ``leashed:tp=inf``, ``leashed:tp=inf+inverse`` (module docstring)."""
    return strategy.label if step == CONSTANT else f"{strategy.label}{LABEL_SEPARATOR}{step.label}"


# -- the edge and the registry: text in, plugins out ---------------------------------

def parse_strategy(spec: "str | Choice | StrategySpec") -> StrategySpec:
    """A strategy spec as the runner needs it: parsed from text (the edge), or a choice
    bound to the registered strategy of its name (no text parsed)."""
    from asgdbench.plugins.strategies import StrategySpec, get_strategy, parse_spec

    if isinstance(spec, Choice):
        strategy = get_strategy(spec.name)
        return StrategySpec(strategy, _bind(strategy.params, spec, f"strategy {spec.name!r}"))
    return parse_spec(spec)


def parse_step(spec: "str | Choice | StepSpec | None") -> StepSpec:
    """A step-rule spec as the runner needs it (None: the default rule); see
    :func:`parse_strategy`."""
    if isinstance(spec, Choice):
        rule = STEP_RULES.get(spec.name)
        return StepSpec(rule, _bind(rule.params, spec, f"step rule {spec.name!r}"))
    return parse_step_spec(spec)


def _bind(params: tuple[Param, ...], choice: Choice, owner: str) -> tuple[tuple[str, Any], ...]:
    """Every parameter of ``params`` with the choice's value (typed by the parameter's kind),
    else its default; a value for a parameter the plugin does not declare is refused."""
    given = dict(choice.params)
    for key in given:
        find_param(params, key, owner)
    return tuple((p.name, _typed(p, given[p.name]) if p.name in given else p.default)
                 for p in params)


def _typed(param: Param, value: Any) -> Any:
    """``value`` as the parameter's kind holds it (a choice read from a file has ``1`` for
    a float parameter's ``1.0``)."""
    if param.kind == "float":
        return float(value)
    if param.kind == "int" or (param.kind == "int_or_inf" and value != math.inf):
        return int(value)
    return value
