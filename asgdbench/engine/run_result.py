"""What one run produces: its configuration, outcome and telemetry, JSON-serialisable.

The telemetry fields of :class:`RunResult` are built from their declaration
(:mod:`asgdbench.engine.telemetry`); this module declares the configuration and the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

import numpy as np

from asgdbench.engine.choice import CONSTANT, Choice, as_choice, run_label
from asgdbench.engine.telemetry import TELEMETRY, Telemetry

STATUSES = ("converged", "diverged", "timeout", "budget", "error")
WORKLOAD_DEFAULT: Any = object()
"""Pass for ``target_loss``/``max_time`` to take the workload's value (None disables a rule)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run; two runs with equal configs are repeats.

    ``strategy`` and ``step`` are typed :class:`~asgdbench.engine.choice.Choice` values; a
    canonical spec string given for either is read as one (no registry needed).
    """

    workload: str
    strategy: Choice
    threads: int
    lr: float
    batch_size: int
    seed: int
    target_loss: float | None
    max_time: float | None
    max_updates: int | None
    dtype: str = "float32"
    step: Choice = CONSTANT
    """The step rule (runs recorded before step rules existed: constant)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", as_choice(self.strategy))
        object.__setattr__(self, "step", as_choice(self.step, CONSTANT))

    def key(self) -> tuple:
        """Identity of a grid cell, for resuming a grid without redoing runs: the plan's
        canonical labels, the same whichever plugins are loaded."""
        return (self.workload, self.strategy.label, self.step.label, self.threads,
                float(self.lr), self.batch_size, self.seed, self.dtype)

    @property
    def label(self) -> str:
        """Strategy and step rule, as tables show them: ``leashed:tp=inf+inverse``
        (:func:`~asgdbench.engine.choice.run_label`)."""
        return run_label(self.strategy, self.step)

    def to_record(self) -> dict[str, Any]:
        """The config as a result file holds it: the strategy and step rule as their labels."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        return record | {"strategy": self.strategy.label, "step": self.step.label}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> "RunConfig":
        """Read a config from a result record, those of earlier versions included: the
        strategy under its old key ``algorithm``, no ``step`` (constant)."""
        names = cls.__dataclass_fields__
        values = {k: data[k] for k in names if k in data}
        if "strategy" not in values and "algorithm" in data:
            values["strategy"] = data["algorithm"]
        return cls(**values)


@dataclass
class RunOutcome:
    """How one run ended and where it ran: the fields of a record that are not telemetry.

    :class:`RunResult` adds a field per declared telemetry item
    (:data:`asgdbench.engine.telemetry.TELEMETRY`). ``status`` says how the run ended;
    nothing is averaged or hidden here. Times are seconds from the start barrier;
    ``time_to_target_s`` and ``steps_to_target`` are None unless the smoothed loss reached
    the target.
    """

    config: RunConfig
    status: str
    wall_s: float
    time_to_target_s: float | None
    steps_to_target: int | None
    loss_trace: list[list]
    initial_loss: float
    final_loss: float | None
    test_loss: float | None
    test_accuracy: float | None
    compile_s: float
    evaluation: dict[str, Any] = field(default_factory=dict)
    strategy_state: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    final_params: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The trained parameter vector; kept in memory only, never serialised."""
    error: str | None = None
    """Why the run is invalid (status ``error``): a stuck or failed thread, a broken invariant."""
    stuck_threads: int = 0
    """Worker threads still running after the stop grace period: later runs in this process share the CPU with them."""
    overrun_s: float | None = None
    """For a run stopped by its time limit: how far past the limit the last thread ended."""
    strategy_source: dict[str, Any] = field(default_factory=dict)
    """Where the strategy came from: built-in, a plugin file (path and SHA-256), an entry point."""
    workload_source: dict[str, Any] = field(default_factory=dict)
    """Where the workload came from, likewise."""
    step_source: dict[str, Any] = field(default_factory=dict)
    """Where the step rule came from, likewise."""
    grid_order: dict[str, Any] = field(default_factory=dict)
    """Where the run stood in its grid: ``order`` (interleaved or strategy), ``order_seed``,
    ``round`` (its seed) and ``position`` (0-based, in the order the grid ran); empty for a
    single run."""

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: the config's fields first, non-finite floats as None."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("config", "final_params")}  # no deep copy of the parameters
        return _finite({**self.config.to_record(), **data})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        """A record from its dict; a telemetry field it lacks (an older file) takes its empty value."""
        config = RunConfig.from_record(data)
        rest = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "config"}
        return cls(config=config, **rest)


def result_type(telemetry: Sequence[Telemetry]) -> type:
    """The record class: :class:`RunOutcome` and a field per ``telemetry`` item, in order."""
    return make_dataclass(
        "RunResult",
        [(item.name, Any, field(default_factory=item.empty)) for item in telemetry],
        bases=(RunOutcome,),
        namespace={"__module__": __name__, "__doc__": _result_doc(telemetry)},
    )


def _result_doc(telemetry: Sequence[Telemetry]) -> str:
    lines = [f"    ``{item.name}`` [{item.unit}]: {item.description}." for item in telemetry]
    return ("One run's record: its outcome (:class:`RunOutcome`) and its telemetry, a field\n"
            "per item of :data:`asgdbench.engine.telemetry.TELEMETRY`:\n\n" + "\n".join(lines))


RunResult = result_type(TELEMETRY)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
