"""Worker loops compiled once per machine: generated source, cached by numba, keyed by content.

The generic loop (:func:`asgdbench.engine.worker.worker_loop`) takes the strategy's,
workload's and step rule's kernels as first-class arguments, and numba cannot reuse such a
compilation in another process (the dispatcher's identity enters the key: numba issues
#2956 and #6264), so every process would compile it again, for seconds. Instead, for each
combination this module writes a module of its own (the pattern of pytensor's numba backend):

- its source is the template's with the kernel parameters removed: the kernels are the
  module's globals, so the compiled loop's signature holds only data types;
- its name is ``asgdbench_loop_<template>_<key>``, where the key is a SHA-256 over everything
  that goes into the compiled code (:func:`cache_key`): the format of this generator, the
  source of the whole installed project (engine, strategies, step rules, workloads), the
  source of the template's and every kernel's defining file (a ``--plugin`` file, a
  benchmark, an outside package), the Python, numba, llvmlite and NumPy versions, numba's optimisation level, the CPU (numba's
  own machine key: target, CPU name and features) and the numba type of every argument
  (which holds the dtype). Editing any of these gives a new key, hence a new module: nothing
  is ever stale;
- it is written to a real file in :func:`cache_folder` (a temporary file, then ``os.replace``,
  so a reader sees the whole file or none) and compiled with numba's ``cache=True``, which
  keeps its machine code in ``__pycache__`` next to it. numba writes its index and data files
  the same way (temporary file, then ``os.replace``), and since the key holds the argument
  types, every entry has exactly one signature: two processes filling it at once write the
  same entry, never each other's.

Kernels reach the loop as :class:`StaticKernel` globals: a dispatcher constant that is passed
on as a value (the step rule, which the loop hands to the strategy's ``update``) would
otherwise be lowered as its address in this process, which numba refuses to cache.

A folder that cannot be written costs one warning line; the loop is then compiled in memory,
as is a loop whose kernels have no source file or are closures over values the key cannot
name (see :func:`kernel_identity`).
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import shutil
import sys
import textwrap
import types as pytypes
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgdbench.caching import ENV_VAR, cache_folder, write_atomically
from asgdbench.engine.compile_key import KEY_CHARS, cache_key, kernel_identity

MODULE_PREFIX = "asgdbench_loop_"
"""Generated modules are named ``asgdbench_loop_<template>_<key>``."""

_loaded: dict[Any, Any] = {}  # key (or the kernels themselves) -> compiled loop, this process
_warned: set[str] = set()


# -- kernels as constants -------------------------------------------------------------

class StaticKernel:
    """A kernel bound into generated code: typed as its dispatcher, lowered as no value at all.

    Calls through it are resolved at compile time, exactly as calls of a dispatcher
    argument are, so the compiled code is the same; only the constant differs (a null
    pointer instead of this process's address of the dispatcher object).
    """

    __slots__ = ("dispatcher",)

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher


@functools.cache
def _register_static_kernel_type() -> None:
    """Teach numba :class:`StaticKernel` (once, on the first compile: numba is imported lazily)."""
    from numba.core import types
    from numba.core.datamodel import models, register_default
    from numba.core.imputils import lower_constant
    from numba.extending import typeof_impl

    class StaticKernelType(types.Dispatcher):
        def __init__(self, dispatcher: Any) -> None:
            self._store_object(dispatcher)
            types.Callable.__init__(self, f"static({dispatcher})")

    register_default(StaticKernelType)(models.OpaqueModel)

    @typeof_impl.register(StaticKernel)
    def _typeof(value: StaticKernel, context: Any) -> Any:
        return StaticKernelType(value.dispatcher)

    @lower_constant(StaticKernelType)
    def _constant(context: Any, builder: Any, kind: Any, value: Any) -> Any:
        return context.get_constant_null(kind)


# -- the generated source -----------------------------------------------------------------

def generate_source(template: Any, kernels: Mapping[str, Any], key: str | None) -> str:
    """The template's source with the kernel parameters removed (they are module globals)."""
    function = template.py_func
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    [definition] = tree.body
    assert isinstance(definition, ast.FunctionDef)
    definition.decorator_list = []
    missing = set(kernels) - {arg.arg for arg in definition.args.args}
    if missing:
        raise ValueError(f"{function.__qualname__} has no parameters {sorted(missing)}")
    definition.args.args = [arg for arg in definition.args.args if arg.arg not in kernels]
    header = [f"# Generated by asgdbench.engine.loop_cache from {function.__module__}."
              f"{function.__qualname__}; key {key}.",
              "# The kernels are this module's globals, bound when it is loaded:"]
    header += [f"#   {name} = {kernel_identity(kernels[name]) or kernels[name]!r}"
               for name in sorted(kernels)]
    return "\n".join(header) + "\n\n" + ast.unparse(tree) + "\n"


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"asgdbench: warning: {message}", file=sys.stderr)


def _writable_file(folder: Path, name: str, text: str) -> Path | None:
    """``folder/name`` holding ``text`` (written if missing), or None if the folder refuses."""
    path = folder / name
    try:
        if not path.is_file() or path.read_text() != text:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text.encode())
        (folder / "__pycache__").mkdir(exist_ok=True)
        if not os.access(folder / "__pycache__", os.W_OK):
            raise PermissionError(f"{folder / '__pycache__'} is not writable")
    except OSError as error:
        _warn_once(f"cannot write the compile cache in {folder} ({error.strerror or error}); "
                   f"compiling in memory (set {ENV_VAR} to a writable folder)")
        return None
    return path


def specialize(template: Any, kernels: Mapping[str, Any], args: tuple, *,
               cache: bool = True) -> Any:
    """``template`` compiled for ``kernels``, to be called with the remaining ``args``.

    ``template`` is an ``@njit`` function whose parameters named in ``kernels`` are
    kernels; the result takes the other parameters, in order, and is compiled (or loaded
    from the cache) for ``args`` before it is returned. ``cache=False`` compiles a fresh
    copy in memory, whose LLVM IR numba can show (it hides the IR of cached code):
    ``loop.inspect_llvm(loop.signatures[0])``.
    """
    from numba import njit

    _register_static_kernel_type()
    signature = tuple(_typeof(arg) for arg in args)
    key = cache_key(template, kernels, args) if cache else None
    # kernels the key cannot name (closures over arrays, no source file): this process only
    memo: Any = key if key is not None or not cache else (
        template, tuple(sorted(kernels.items())), signature)
    if memo is not None and memo in _loaded:
        return _loaded[memo]
    name = f"{MODULE_PREFIX}{template.py_func.__name__}_{key or uuid.uuid4().hex[:KEY_CHARS]}"
    source = generate_source(template, kernels, key)
    path = None if key is None else _writable_file(cache_folder(), f"{name}.py", source)
    module = pytypes.ModuleType(name)
    module.__file__ = str(path) if path else f"<{name}>"
    namespace = module.__dict__
    namespace.update({k: v for k, v in template.py_func.__globals__.items()
                      if not k.startswith("__")})
    namespace.update({kernel: StaticKernel(value) for kernel, value in kernels.items()})
    exec(compile(source, module.__file__, "exec"), namespace)
    sys.modules[name] = module  # numba finds a cached entry's environment by module name
    loop = njit(nogil=True, cache=path is not None)(namespace[template.py_func.__name__])
    loop.compile(signature)
    if memo is not None:
        _loaded[memo] = loop
    return loop


def _typeof(value: Any) -> Any:
    from numba import typeof

    return typeof(value)


# -- the cache folder, for `asgdbench cache` ------------------------------------------------

@dataclass(frozen=True)
class CacheInfo:
    """What the cache folder holds (the compiled loops, and prepared data sets)."""

    folder: Path
    entries: int
    """Generated loop modules (each compiled for one combination of kernels and types)."""
    compiled: int
    """Of those, how many have compiled code stored (numba's index and data files)."""
    datasets: int
    """Prepared data sets (see :func:`asgdbench.workloads.datasets.load_digits`)."""
    size_bytes: int


def _owned_files(folder: Path) -> list[Path]:
    """The files this cache owns in ``folder`` (a shared folder may hold others)."""
    owned = list(folder.glob(f"{MODULE_PREFIX}*.py"))
    owned += folder.glob(f".{MODULE_PREFIX}*.tmp")
    owned += (folder / "__pycache__").glob(f"{MODULE_PREFIX}*")
    owned += (folder / "datasets").glob("*.npz")
    owned += (folder / "datasets").glob(".*.tmp")
    return owned


def describe_cache(folder: Path | None = None) -> CacheInfo:
    """Count and measure the cache's files (no numba needed)."""
    folder = cache_folder() if folder is None else folder
    files = _owned_files(folder) if folder.is_dir() else []
    modules = [path for path in files if path.suffix == ".py"]
    indexed = {path.name.partition(".")[0] for path in files if path.suffix == ".nbi"}
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except OSError:  # removed meanwhile by another process
            pass
    return CacheInfo(folder, len(modules), sum(path.stem in indexed for path in modules),
                     sum(path.suffix == ".npz" for path in files), size)


def unwritable_reason(folder: Path | None = None) -> str | None:
    """Why ``folder`` (default: the cache folder) could not take cache files, or None if it
    could: it, or the nearest of its parents that exists, must be a writable folder."""
    folder = cache_folder() if folder is None else folder
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def clear_cache(folder: Path | None = None) -> int:
    """Remove every file this cache owns; how many. Safe while other processes run: one that
    misses a file it was about to load compiles instead."""
    folder = cache_folder() if folder is None else folder
    removed = 0
    for path in _owned_files(folder) if folder.is_dir() else []:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    _loaded.clear()
    return removed
