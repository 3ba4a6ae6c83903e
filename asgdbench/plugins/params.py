"""The parameter grammar shared by every plugin kind: typed parameters and spec strings.

A spec string names a plugin and binds some of its parameters,
``name:p1=v1:p2=v2`` (``leashed:tp=inf``, ``tail:amplitude=0.5``); every value
is parsed and checked by the :class:`Param` that declares it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

from asgdbench.errors import ConfigError


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _parse_int_or_inf(text: str) -> int | float:
    return math.inf if text.lower() in ("inf", "infinity") else int(text)


def _parse_finite(text: str) -> float:
    """A float parameter is a finite number: nan or inf would run, then mean nothing."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_CONVERTERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "int": (int, "an integer"),
    "int_or_inf": (_parse_int_or_inf, "an integer or inf"),
    "float": (_parse_finite, "a finite number"),
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


def split_spec(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """``"name:p1=v1:p2=v2"`` as ``("name", [("p1", "v1"), ("p2", "v2")])``, unparsed."""
    name, *assignments = spec.strip().split(":")
    pairs = []
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad parameter {assignment!r} in {spec!r}: write name=value")
        if key.strip() in dict(pairs):
            raise ConfigError(f"parameter {key.strip()!r} is given twice in {spec!r}")
        pairs.append((key.strip(), text))
    return name.strip(), pairs


def bind(params: tuple[Param, ...], given: list[tuple[str, str]], owner: str
         ) -> tuple[tuple[str, Any], ...]:
    """Every parameter of ``params`` with its value: parsed from ``given``, else its default."""
    values = {key: find_param(params, key, owner).parse(text) for key, text in given}
    return tuple((p.name, values.get(p.name, p.default)) for p in params)


def find_param(params: tuple[Param, ...], name: str, owner: str) -> Param:
    """The parameter called ``name``; a ConfigError listing the valid ones if there is none."""
    for param in params:
        if param.name == name:
            return param
    valid = ", ".join(p.name for p in params) or "none"
    raise ConfigError(f"{owner} has no parameter {name!r} (valid: {valid})")


def spec_label(name: str, params: tuple[Param, ...], values: tuple[tuple[str, Any], ...]) -> str:
    """The canonical spec string: the name, then every bound parameter, in schema order."""
    by_name = {p.name: p for p in params}
    return ":".join([name, *(f"{key}={by_name[key].format(value)}" for key, value in values)])


def make_state_problem(make_state: Any, params: tuple[Param, ...], fixed: tuple[str, ...]
                       ) -> str | None:
    """Why ``make_state(*fixed, **params)`` cannot be called as declared; None if it can."""
    if not callable(make_state):
        return "make_state must be a function"
    signature = inspect.signature(make_state)
    if len(signature.parameters) < len(fixed):
        return f"make_state must take ({', '.join(fixed)}, **params)"
    declared = {p.name for p in params}
    for param in list(signature.parameters.values())[len(fixed):]:
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if param.name not in declared and param.default is param.empty:
            return f"make_state needs {param.name!r}, which is not one of its declared params"
    if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        for name in sorted(declared - set(signature.parameters)):
            return f"parameter {name!r} is declared but make_state does not take it"
    return None


class BoundSpec:
    """A plugin with every parameter bound, as parsed from a spec string.

    Subclasses are frozen dataclasses holding the plugin and ``values`` (each
    parameter with its value, in schema order); ``plugin`` names the former.
    """

    values: tuple[tuple[str, Any], ...]

    @property
    def plugin(self) -> Any:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def label(self) -> str:
        """Canonical spec string: the name, then every parameter, in schema order."""
        return spec_label(self.plugin.name, self.plugin.params, self.values)

    def __str__(self) -> str:
        return self.label
