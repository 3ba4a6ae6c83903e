"""Plugin registration and discovery, one set of rules for every kind of plugin.

Strategies (:mod:`asgdbench.plugins.strategies`) and workloads (:mod:`asgdbench.workloads`)
are both a :class:`Registry`: a name is letters, digits, ``-`` and ``_``; an
item is checked when it registers, before anything compiles; a name is taken
once (the same source registering it again, say a plugin file loaded twice, is
fine); every item remembers where it came from (built-in, a plugin file and its
SHA-256, an entry point's distribution and version). Items arrive from the
built-in package, an entry-point group, or a ``--plugin`` file
(:func:`load_plugin_file`), which may register items of either kind.

Every failure is a :class:`~asgdbench.errors.PluginError` whose one-line
message names the item and its source; an installed entry point that fails to
load is reported once on stderr and skipped, so one broken package never
breaks every command.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from asgdbench.errors import ConfigError, PluginError

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

_loading: list[dict[str, Any]] = []  # the source being loaded now (a plugin file, an entry point)


def describe_source(source: dict[str, Any]) -> str:
    """A source as a reader would say it: ``plugin file PATH``, ``entry point 'x' of dist 1.0``..."""
    kind = source["kind"]
    if kind == "file":
        return f"plugin file {source['path']}"
    if kind == "entry point":
        return (f"entry point {source['name']!r} of {source['distribution']} "
                f"{source['version']}")
    if kind == "built-in":
        return f"built-in {source['module']}"
    return f"module {source['module']}"


@contextmanager
def registering_from(source: dict[str, Any]) -> Iterator[None]:
    """Everything registered inside the block is attributed to ``source``."""
    _loading.append(source)
    try:
        yield
    finally:
        _loading.pop()


class Registry(Generic[T]):
    """Named items of one kind (``kind``: "strategy", "workload"), validated as they register.

    ``check(item, where)`` raises PluginError for a malformed item;
    ``defined_in(item)`` names the module that defines it (to tell built-ins
    from the rest); ``builtins`` imports the built-in items.
    """

    def __init__(self, kind: str, entry_point_group: str, check: Callable[[T, str], None],
                 defined_in: Callable[[T], str], builtins: Callable[[], None],
                 builtin_prefix: str) -> None:
        self.kind, self.entry_point_group = kind, entry_point_group
        self._check, self._defined_in = check, defined_in
        self._builtins, self._builtin_prefix = builtins, builtin_prefix
        self._items: dict[str, T] = {}
        self._sources: dict[str, dict[str, Any]] = {}
        self._broken: list[str] = []
        self._discovered = False

    def register(self, item: T) -> T:
        name = getattr(item, "name", None)
        source = self.source_of(item)
        where = describe_source(source)
        if not isinstance(name, str) or not NAME.match(name):
            raise PluginError(f"{self.kind} {name!r} from {where}: its name must be letters, "
                              "digits, - and _ (it is used on the command line)")
        self._check(item, where)
        previous = self._sources.get(name)
        if previous is not None and previous != source:
            raise PluginError(f"{self.kind} {name!r} from {where} clashes with the one from "
                              f"{describe_source(previous)}: choose another name")
        self._items[name] = item
        self._sources[name] = source
        return item

    def source_of(self, item: T) -> dict[str, Any]:
        """Where ``item``, being registered now, comes from (a plugin file being loaded, an
        entry point, a built-in or other module): what :meth:`source` later returns for it."""
        return self.source_in(self._defined_in(item))

    def source_in(self, module: str) -> dict[str, Any]:
        """:meth:`source_of` an item defined in ``module`` (for things that register beside
        the items, such as workload families)."""
        if _loading:
            return dict(_loading[-1])
        module = module or "?"
        kind = "built-in" if module.startswith(self._builtin_prefix) else "module"
        return {"kind": kind, "module": module}

    def discover(self) -> None:
        """Import the built-ins and the entry points, once."""
        if self._discovered:
            return
        self._discovered = True
        loading = _loading[:]  # discovery triggered from inside a plugin file's import:
        _loading.clear()  # the built-ins are still built-ins, not that file's (and clash with it)
        try:
            self._discover()
        finally:
            _loading[:] = loading

    def _discover(self) -> None:
        self._builtins()
        for entry_point in entry_points(group=self.entry_point_group):
            dist = getattr(entry_point, "dist", None)
            source = {"kind": "entry point", "name": entry_point.name,
                      "distribution": getattr(dist, "name", "?"),
                      "version": getattr(dist, "version", "?")}
            try:
                with registering_from(source):
                    entry_point.load()
            except Exception as error:  # a broken plugin must not break every command
                message = (f"{describe_source(source)} failed to load and is skipped: "
                           f"{type(error).__name__}: {' '.join(str(error).split())}")
                self._broken.append(message)
                print(f"asgdbench: warning: {message}", file=sys.stderr)

    def available(self) -> dict[str, T]:
        self.discover()
        return dict(sorted(self._items.items()))

    def get(self, name: str) -> T:
        items = self.available()
        if name not in items:
            raise ConfigError(f"unknown {self.kind} {name!r} (valid: {', '.join(items)})")
        return items[name]

    def source(self, name: str) -> dict[str, Any]:
        self.discover()
        return dict(self._sources[name])

    def broken(self) -> list[str]:
        self.discover()
        return list(self._broken)

    def forget(self, name: str) -> None:
        """Unregister ``name`` (for tests that register throw-away items)."""
        self._items.pop(name, None)
        self._sources.pop(name, None)


def import_package_modules(package: str) -> None:
    """Import every module of ``package`` (how built-in plugins register)."""
    import pkgutil

    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
