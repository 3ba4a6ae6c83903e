"""What the runner trains: a :class:`Workload`, and the registry of named ones.

A workload bundles a gradient kernel with its training data and the defaults
(step size, batch size, convergence target) a run starts from. The runner only
needs this interface, so a workload other than an MLP is one more entry here.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from asgdbench.errors import ConfigError, PluginError
from asgdbench.plugins.registry import NAME, Registry

ENTRY_POINT_GROUP = "asgdbench.workloads"


@dataclass(frozen=True)
class Defaults:
    """Where a run on this workload starts unless told otherwise."""

    lr: float
    batch_size: int
    target_loss: float | None
    max_time: float


@dataclass(frozen=True, eq=False)
class Workload:
    """A model and its data, ready for the worker loop.

    ``gradient(params, train_data, rows, workspace, grad) -> loss`` is an
    ``@njit(nogil=True)`` kernel; ``evaluate(params)`` returns held-out metrics
    (``test_loss``, ``test_accuracy``) and ``training_loss(params)`` the loss the
    divergence rule compares against.

    A *sparse* workload (``sparse=True``: each example touches a few coordinates) gives
    ``support(train_data, rows, workspace, support) -> n_support``, which writes the
    minibatch's union support (distinct coordinates) into ``support[:n_support]`` in
    O(nnz), and a gradient with the sparse signature
    ``gradient(params, train_data, rows, workspace, support, n_support, values) -> loss``,
    which reads ``params`` only at the support and writes the partial derivatives into
    ``values[:n_support]``; ``max_support(batch_size)`` is the most coordinates a minibatch
    touches (the size of the per-thread ``support`` and ``values`` buffers). Both kernels
    are checked by parameter name when the workload is built.
    """

    name: str
    gradient: Any
    train_data: tuple
    n_samples: int
    n_params: int
    dtype: np.dtype
    init_params: Callable[[int], np.ndarray]
    make_workspace: Callable[[int], tuple]
    evaluate: Callable[[np.ndarray], dict[str, float]]
    training_loss: Callable[[np.ndarray], float]
    defaults: Defaults
    description: dict[str, Any] = field(default_factory=dict)
    sparse: bool = False
    support: Any = None
    """Sparse workloads: the support kernel (see the class docstring); None when dense."""
    max_support: Callable[[int], int] | None = None
    """Sparse workloads: buffer size for a minibatch of ``batch_size`` rows; None when dense."""

    def __post_init__(self) -> None:
        problem = sparse_problem(self)
        if problem:
            raise PluginError(f"workload {self.name!r}: {problem}")


SPARSE_KERNEL_SIGNATURES = {
    "support": ("train_data", "rows", "workspace", "support"),
    "gradient": ("params", "train_data", "rows", "workspace", "support", "n_support", "values"),
}
"""A sparse workload's kernels' parameters, by name, as the sparse worker loop calls them."""


def sparse_problem(workload: Workload) -> str | None:
    """Why a sparse workload could not run (a kernel missing or misnamed), in one line; None
    if it can, or if it is dense."""
    if not workload.sparse:
        if workload.support is not None or workload.max_support is not None:
            return "support and max_support are for sparse workloads (sparse=True)"
        return None
    if not callable(workload.max_support):
        return "a sparse workload needs max_support(batch_size) -> int"
    for kernel, expected in SPARSE_KERNEL_SIGNATURES.items():
        function = getattr(workload, kernel)
        python = getattr(function, "py_func", None)
        if python is None:
            return (f"a sparse workload's {kernel} must be an @njit(nogil=True) kernel, not "
                    f"{type(function).__name__}")
        given = tuple(inspect.signature(python).parameters)
        if given != expected:
            return (f"{kernel} has the wrong signature for a sparse workload: expected "
                    f"{kernel}({', '.join(expected)}), given "
                    f"{python.__name__}({', '.join(given)})")
    return None


@dataclass(frozen=True)
class WorkloadSpec:
    """A named workload: defaults to list, and how to build it (loading its data).

    ``group`` (the model family, e.g. ``mlp``, ``cnn``) is how ``asgdbench list`` sorts
    the catalogue.

    ``build`` is often a ``functools.partial`` of a generic builder with its options bound
    (``partial(build_network, dataset="mnist", layers=...)``). A builder that carries an
    ``options_problem(**options) -> str | None`` function has those options checked at
    registration, before any data is loaded: a CNN on a data set without images is then a
    one-line :class:`PluginError` naming the workload, not a failure deep inside its first run.
    """

    name: str
    summary: str
    defaults: Defaults
    build: Callable[..., Workload]
    group: str = "other"

    def load(self, data_dir: str | None = None, dtype: str = "float32") -> Workload:
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, not {dtype!r}")
        return self.build(self, data_dir=data_dir, dtype=np.dtype(dtype))


def _check(spec: WorkloadSpec, where: str) -> None:
    """Refuse a workload the harness could not run, before any data is loaded."""
    def fail(problem: str) -> None:
        raise PluginError(f"workload {spec.name!r} from {where}: {problem}")

    if not callable(spec.build):
        fail("build must be a function (spec, *, data_dir, dtype) -> Workload")
    if not isinstance(spec.defaults, Defaults):
        fail("defaults must be a Defaults(lr, batch_size, target_loss, max_time)")
    defaults = spec.defaults
    if not (isinstance(defaults.lr, (int, float)) and defaults.lr > 0):
        fail(f"default lr must be > 0, not {defaults.lr!r}")
    if not (isinstance(defaults.batch_size, int) and defaults.batch_size >= 1):
        fail(f"default batch size must be an integer >= 1, not {defaults.batch_size!r}")
    if defaults.max_time is not None and not defaults.max_time > 0:
        fail(f"default max time must be > 0, not {defaults.max_time!r}")
    problem = options_problem(spec.build)
    if problem:
        fail(problem)


def options_problem(build: Callable[..., Workload]) -> str | None:
    """What the builder says is wrong with the options a ``functools.partial`` binds to it
    (its ``options_problem`` attribute; see :class:`WorkloadSpec`), or None."""
    if not isinstance(build, functools.partial):
        return None
    problem_of = getattr(build.func, "options_problem", None)
    if problem_of is None:
        return None
    if build.args:
        return "bind the builder's options by name (partial(build, dataset=...)), not by position"
    return problem_of(**build.keywords)


def _defined_in(spec: WorkloadSpec) -> str:
    build = getattr(spec.build, "func", spec.build)  # through functools.partial
    return getattr(build, "__module__", "") or ""


WORKLOADS: Registry[WorkloadSpec] = Registry(
    "workload", ENTRY_POINT_GROUP, _check, defined_in=_defined_in,
    builtins=lambda: [importlib.import_module(f"asgdbench.workloads.{name}")
                      for name in ("catalog", "probe", "sparse_catalog")],
    builtin_prefix="asgdbench.workloads.",
)


@dataclass(frozen=True)
class WorkloadFamily:
    """Workloads named ``PREFIX:ARGUMENT``, made when asked for (``svmlight:PATH``: the
    user's own data file), so that a name can carry what no fixed catalogue can list.

    ``make(name, argument) -> WorkloadSpec`` builds the spec without loading anything (its
    ``build`` loads, and fails with one line on a missing or bad file); ``asgdbench list``
    shows the family as ``PREFIX:<argument>`` with ``argument`` naming what goes there.
    """

    prefix: str
    argument: str
    make: Callable[[str, str], WorkloadSpec]


WORKLOAD_FAMILIES: dict[str, WorkloadFamily] = {}
"""The registered :class:`WorkloadFamily` objects by prefix."""

_FAMILY_SOURCES: dict[str, dict[str, Any]] = {}
"""Where each family came from, taken when it registered (as the registry takes a workload's)."""


def register_workload_family(family: WorkloadFamily) -> WorkloadFamily:
    """Add a family; its prefix must be a valid workload name, taken neither by a workload nor
    by another family (a second registration of the same family is fine)."""
    if not NAME.match(family.prefix):
        raise PluginError(f"workload family {family.prefix!r}: its prefix must be letters, "
                          f"digits, - and _")
    previous = WORKLOAD_FAMILIES.get(family.prefix)
    if previous is not None and previous != family:
        raise PluginError(f"workload family {family.prefix!r} is already registered")
    _FAMILY_SOURCES[family.prefix] = WORKLOADS.source_in(getattr(family.make, "__module__", ""))
    WORKLOAD_FAMILIES[family.prefix] = family
    return family


def workload_source(name: str) -> dict[str, Any]:
    """Where the named workload comes from, for a run's record: its registration's source;
    a family member's (``svmlight:PATH``) is its family's, with the family named. Empty for
    a workload that is not registered (built by hand)."""
    prefix, colon, _ = name.partition(":")
    if colon:
        source = _FAMILY_SOURCES.get(prefix)
        return {} if source is None else {**source, "family": prefix}
    return WORKLOADS.source(name) if name in available_workloads() else {}

WORKLOAD_GROUPS: dict[str, str] = {
    "mlp": "multilayer perceptrons",
    "cnn": "cnn: the authors' small CNN (2 conv 3x3, 2 pool, 2 dense)",
    "lenet": "LeNet (2 conv 5x5, 2 pool, 2 dense)",
    "sparse": "sparse: each example touches a few coordinates (HOGWILD!'s regime)",
    "check": "strategy checks",
    "other": "other",
}
"""How ``asgdbench list`` titles each :attr:`WorkloadSpec.group`, in listing order."""


def workloads_by_group() -> dict[str, list[WorkloadSpec]]:
    """Registered workloads by group, groups in :data:`WORKLOAD_GROUPS` order, names sorted."""
    groups: dict[str, list[WorkloadSpec]] = {}
    workloads = available_workloads()
    for family in WORKLOAD_FAMILIES.values():  # listed by their pattern, PREFIX:<argument>
        pattern = f"{family.prefix}:<{family.argument}>"
        workloads[pattern] = family.make(pattern, f"<{family.argument}>")
    for group in [*WORKLOAD_GROUPS, *sorted({s.group for s in workloads.values()})]:
        members = [spec for spec in workloads.values() if spec.group == group]
        if members and group not in groups:
            groups[group] = members
    return groups


def register_workload(spec: WorkloadSpec) -> WorkloadSpec:
    """Add ``spec`` to the registry after checking it; a name is taken once (see :mod:`asgdbench.plugins.registry`).

    The built-ins are discovered first (they register on first use, not at import), so
    that a workload named like one of them is refused at once, not the built-in later.
    """
    WORKLOADS.discover()
    return WORKLOADS.register(spec)


def available_workloads() -> dict[str, WorkloadSpec]:
    """Every registered workload by name: built-ins, entry points and loaded plugins."""
    return WORKLOADS.available()


def get_workload(name: str) -> WorkloadSpec:
    """The named workload; a name ``PREFIX:ARGUMENT`` is made by its :class:`WorkloadFamily`."""
    prefix, colon, argument = name.partition(":")
    if not colon:
        return WORKLOADS.get(name)
    WORKLOADS.discover()
    family = WORKLOAD_FAMILIES.get(prefix)
    if family is None:
        raise ConfigError(f"unknown workload family {prefix!r} in {name!r} (families: "
                          f"{', '.join(f'{p}:<{f.argument}>' for p, f in WORKLOAD_FAMILIES.items())})")
    if not argument:
        raise ConfigError(f"workload {name!r} needs its {family.argument} after the colon "
                          f"({prefix}:<{family.argument}>)")
    return family.make(name, argument)


def load_workload(name: str, data_dir: str | None = None, dtype: str = "float32") -> Workload:
    """Build the named workload, loading its data set."""
    return get_workload(name).load(data_dir=data_dir, dtype=dtype)
