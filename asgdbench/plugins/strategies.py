"""The strategy registry: names, typed parameter schemas and spec strings.

A synchronization strategy is a small bundle of numba kernels plus a shared-state
constructor (see :class:`Strategy`). Built-ins live in ``algorithms/``, one file
each; third-party ones arrive through the entry-point group
``asgdbench.algorithms`` or a drop-in file passed to :func:`load_plugin_file`.
A spec string picks a strategy and its parameters: ``leashed:tp=inf``,
``lock``, ``name:p1=v1:p2=v2``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from asgdbench.errors import PluginError
from asgdbench.plugins.params import (
    BoundSpec,
    Param,
    bind,
    find_param,
    make_state_problem,
    split_spec,
)
from asgdbench.plugins.registry import Registry, import_package_modules
from asgdbench.primitives.steps import retire_nothing

ENTRY_POINT_GROUP = "asgdbench.algorithms"


def _first_array(state: tuple) -> np.ndarray:
    """By convention a strategy's parameter vector is the first array of its state."""
    return state[0]


def _one_vector(state: tuple, n_threads: int) -> int:
    return 1


def _nothing_to_inspect(state: tuple) -> dict[str, Any]:
    return {}


def _support_on_sparse(n_params: int, n_support: int) -> int:
    """Elements an in-place update writes: the support (dense: ``n_support == n_params``)."""
    return n_support


def _at_most_a_pool(n_threads: int) -> int:
    """Leashed-SGD's bound, the largest of the built-ins: one vector per thread pair and one."""
    return 2 * n_threads + 1


@dataclass(frozen=True)
class Strategy:
    """A synchronization strategy: shared state plus the kernels that touch it.

    The harness owns threads, minibatch sampling, the gradient, timing and
    telemetry; a strategy only says how a thread gets parameters to compute on
    and how it applies a gradient. Kernels are ``@njit(nogil=True)`` functions whose
    parameters are checked by name at registration (:data:`KERNEL_SIGNATURES`):

    - ``make_state(init_params, n_threads, **params) -> state``: a ``typing.NamedTuple``
      of arrays (and ``None`` for test-only gates) declared at module top level, so that the
      kernels say ``state.pool`` and numba can cache code typed on it (plain Python, runs
      once before the threads start);
    - ``read(state, tid, control) -> (params_view, token)``: the vector to
      compute the gradient on, and its version (updates applied before it),
      which ``update`` gets back; ``protocol.NOT_READ`` if the run stopped
      while the read waited;
    - ``update(state, tid, token, grad, lr, control, rule, rule_state)
      -> (outcome, staleness, attempts, step)``
      with ``outcome`` one of the codes in :mod:`asgdbench.primitives.protocol`;
      it asks the step rule for the step of its apply, at apply time and with
      that apply's staleness: ``step = steps.rule_step(rule, rule_state, lr,
      staleness, tid)``, and returns the step it applied (``lr`` if none).
      Not ``cache=True``: a kernel taking the rule cannot be cached on disk;
    - ``retire(state, tid)``: give back what the thread still holds, at exit
      (default: nothing to give back);
    - ``final_params(state) -> ndarray`` and ``peak_param_vectors(state, n_threads) -> int``
      (plain Python, after the run; defaults: ``state[0]``, and one vector);
    - ``live_param_vectors(state, n_threads) -> int``: how many parameter vectors
      are alive right now (plain Python, called by the runner's monitor every few
      milliseconds *while the threads run*: a racy read is fine, it is a sample;
      default: ``peak_param_vectors``, right for a strategy whose memory is fixed);
    - ``inspect(state) -> dict``: invariants worth reporting once the threads are
      gone (Leashed-SGD: its free list and latest version), JSON-ready.
    - ``max_param_vectors(n_threads) -> int``: the most parameter vectors the
      state can hold, for the memory check before anything is allocated
      (default ``2 * n_threads + 1``, Leashed-SGD's pool: an upper bound for
      every built-in).

    The sparse path (for workloads whose gradient is a list of (coordinate, value) pairs;
    both kernels or neither, and a strategy without them is refused on a sparse workload):

    - ``read_sparse(state, tid, control, support, n_support) -> (params_view, token)``: a
      vector holding, at ``support[:n_support]``, the values of the version ``token`` names
      (whatever the shared vector holds, for an inconsistent strategy); other coordinates
      unspecified;
    - ``update_sparse(state, tid, token, support, values, n_support, lr, control, rule,
      rule_state) -> (outcome, staleness, attempts, step)``: apply
      ``x[support[k]] -= step * values[k]`` for ``k < n_support``, with ``update``'s outcome
      codes, budget and stop-flag rules;
    - ``written_per_update(n_params, n_support) -> int`` (plain Python): parameter-vector
      elements one applied update writes (dense: ``n_support == n_params``; default
      ``n_support``, an in-place update; a strategy that publishes a new vector per update
      writes ``n_params``), for the telemetry field ``param_bytes_written_per_update``.

    What a strategy promises, so that checks hold it to exactly that:
    ``consistent`` (every read is a whole vector of the version its token
    names, and no update is lost), ``max_threads`` and ``max_updates`` (the
    largest update budget its packed words can count; the runner never asks
    for more).
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
    live_param_vectors: Callable[[tuple, int], int] | None = None
    """Vectors alive now, sampled during the run; None: ``peak_param_vectors`` (fixed memory)."""
    params: tuple[Param, ...] = ()
    uses_cas: bool = False
    consistent: bool = False
    max_threads: int | None = None
    max_updates: int | None = None
    max_param_vectors: Callable[[int], int] = _at_most_a_pool
    read_sparse: Any = None
    """The sparse path's read (None: no sparse path)."""
    update_sparse: Any = None
    """The sparse path's update (None: no sparse path)."""
    written_per_update: Callable[[int, int], int] = _support_on_sparse
    doc: str = field(default="", compare=False)

    def live_vectors_now(self, state: tuple, n_threads: int) -> int:
        """The live-vector sample the monitor records (see ``live_param_vectors``)."""
        count = (self.live_param_vectors or self.peak_param_vectors)(state, n_threads)
        return int(count)

    @property
    def has_sparse_path(self) -> bool:
        """Whether the strategy can run a sparse workload (``read_sparse``/``update_sparse``)."""
        return self.read_sparse is not None and self.update_sparse is not None

    def param(self, name: str) -> Param:
        return find_param(self.params, name, f"strategy {self.name!r}")


@dataclass(frozen=True)
class StrategySpec(BoundSpec):
    """A strategy with every parameter bound, as parsed from a spec string."""

    strategy: Strategy
    values: tuple[tuple[str, Any], ...]

    @property
    def plugin(self) -> Strategy:
        return self.strategy


KERNEL_SIGNATURES = {
    "read": ("state", "tid", "control"),
    "update": ("state", "tid", "token", "grad", "lr", "control", "rule", "rule_state"),
    "retire": ("state", "tid"),
}
"""The kernels' parameters, by name, as the harness calls them (checked at registration)."""

SPARSE_KERNEL_SIGNATURES = {
    "read_sparse": ("state", "tid", "control", "support", "n_support"),
    "update_sparse": ("state", "tid", "token", "support", "values", "n_support", "lr",
                      "control", "rule", "rule_state"),
}
"""The sparse path's kernels, by name (optional: both or neither, checked at registration)."""


def signature_problem(kernel: str, function: Any,
                      expected: tuple[str, ...] | None = None) -> str | None:
    """Why ``function`` cannot be the strategy's ``kernel``, in one line; None if it can.

    Parameters are checked by name, as pluggy checks hook implementations: a kernel that
    takes ``(state, tid, grad, token, ...)`` has the right count but would read the
    gradient as the token. ``expected`` names a kernel other than the contract's three (a
    strategy's own hooks, e.g. Leashed-SGD's).
    """
    python = getattr(function, "py_func", None)
    if python is None:
        return f"{kernel} must be an @njit(nogil=True) kernel, not {type(function).__name__}"
    given = tuple(inspect.signature(python).parameters)
    if expected is None:
        expected = {**KERNEL_SIGNATURES, **SPARSE_KERNEL_SIGNATURES}[kernel]
    if given == expected:
        return None
    return (f"{kernel} has the wrong signature: expected {kernel}({', '.join(expected)}), "
            f"given {python.__name__}({', '.join(given)})")


def _check(strategy: Strategy, where: str) -> None:
    """Refuse a strategy the harness could not run, before anything compiles."""
    def fail(problem: str) -> None:
        raise PluginError(f"strategy {strategy.name!r} from {where}: {problem}")

    for kernel in KERNEL_SIGNATURES:
        problem = signature_problem(kernel, getattr(strategy, kernel))
        if problem:
            fail(problem)
    sparse = [kernel for kernel in SPARSE_KERNEL_SIGNATURES
              if getattr(strategy, kernel) is not None]
    if sparse and len(sparse) != len(SPARSE_KERNEL_SIGNATURES):
        missing = sorted(set(SPARSE_KERNEL_SIGNATURES) - set(sparse))
        fail(f"read_sparse and update_sparse come together (a sparse path needs both); "
             f"{missing[0]} is missing")
    for kernel in sparse:
        problem = signature_problem(kernel, getattr(strategy, kernel))
        if problem:
            fail(problem)
    if not callable(strategy.written_per_update):
        fail("written_per_update must be a function (n_params, n_support) -> int")
    problem = make_state_problem(strategy.make_state, strategy.params,
                                 ("init_params", "n_threads"))
    if problem:
        fail(problem)
    for limit in ("max_threads", "max_updates"):
        value = getattr(strategy, limit)
        if value is not None and (not isinstance(value, int) or value < 1):
            fail(f"{limit} must be None or an integer >= 1, not {value!r}")


STRATEGIES: Registry[Strategy] = Registry(
    "strategy", ENTRY_POINT_GROUP, _check,
    defined_in=lambda strategy: getattr(strategy.make_state, "__module__", "") or "",
    # also imports the subpackage algorithms/step_rules, whose __init__ registers nothing:
    # its rules register with the step-rule registry, which imports them itself
    builtins=lambda: import_package_modules("asgdbench.algorithms"),
    builtin_prefix="asgdbench.algorithms.",
)


def register_strategy(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to the registry, after checking it; a name is taken once.

    Raises :class:`PluginError` naming the strategy and where it came from if
    the name is malformed or already registered from elsewhere, a kernel is
    missing or takes the wrong arguments, or a parameter does not match
    ``make_state``. Registering the same strategy again from the same source
    (a plugin file loaded twice) is allowed.
    """
    return STRATEGIES.register(strategy)


def strategy_source(name: str) -> dict[str, Any]:
    """Where strategy ``name`` came from: built-in, a plugin file (path, SHA-256), an entry point."""
    return STRATEGIES.source(name)


def broken_plugins() -> list[str]:
    """One line per installed strategy plugin that failed to load (reported once, then skipped)."""
    return STRATEGIES.broken()


def available_strategies() -> dict[str, Strategy]:
    """Every registered strategy by name: built-ins, entry points and loaded plugins."""
    return STRATEGIES.available()


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)


def parse_spec(spec: str | StrategySpec) -> StrategySpec:
    """Parse ``name:p1=v1:p2=v2``; unset parameters take their defaults."""
    if isinstance(spec, StrategySpec):
        return spec
    name, given = split_spec(spec)
    strategy = get_strategy(name)
    return StrategySpec(strategy, bind(strategy.params, given, f"strategy {name!r}"))
