"""What names a compiled loop: each kernel's identity, and the cache key built from them.

A loop's key (:func:`cache_key`) is a SHA-256 over everything that goes into its machine code
(see :mod:`asgdbench.engine.loop_cache`): this format, the CPU, the Python, numba, llvmlite and
NumPy versions, the project's source, the template and every kernel (:func:`kernel_identity`:
its module, name, first line, a digest of its code and of the globals it reads, its file's
digest; a closure's cells too), and every argument's numba type. A kernel whose identity
cannot be told (no source file, a global of an unknown kind) has none: its loop is compiled
in memory, never cached under a key that could be wrong.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import os
import platform
import sys
import types as pytypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT = 1
"""Version of the generated source's shape (asgdbench.engine.loop_cache): bump it when the
generator changes what it writes."""
KEY_CHARS = 32  # 128 bits of the SHA-256 in names


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (memoised on its modification time and size)."""
    stat = os.stat(path)
    return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)


def _tree_digest(folders: list[str]) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(f"{path.relative_to(folder)}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()


@functools.cache
def project_digest() -> str:
    """SHA-256 over the source of the installed project: asgdbench, its strategies, workloads."""
    # found, not imported: the engine sees strategies and workloads only through registries
    folders = [folder for package in ("asgdbench", "asgdbench.algorithms", "asgdbench.workloads")
               for folder in importlib.util.find_spec(package).submodule_search_locations]
    return _tree_digest(sorted(set(map(os.path.realpath, folders))))


def _package_digest(module_name: str) -> str | None:
    """The digest of an outside package's whole source (what a kernel of it may import)."""
    top = sys.modules.get(module_name.partition(".")[0])
    folders = list(getattr(top, "__path__", None) or [])
    return _tree_digest(sorted(set(map(os.path.realpath, folders)))) if folders else None


_CONSTANT_CELLS = (bool, int, float, str)
"""Closure cells and globals the key can name by value (besides kernels, named by their
identity)."""
_VERSIONED_PACKAGES = frozenset({"numpy", "numba", "llvmlite", "math", "builtins"})
"""Packages whose versions are in the key: what a kernel takes from them is named by name."""


def _code_digest(code: pytypes.CodeType) -> str:
    """SHA-256 of a function's bytecode and constants (nested code included), not of where its
    file is: marshal's version 2 writes no back-references, so the bytes are the same in
    every process."""
    return hashlib.sha256(marshal.dumps(code.replace(co_filename=""), 2)).hexdigest()[:KEY_CHARS]


def _code_names(code: pytypes.CodeType) -> set[str]:
    """The global (and attribute) names a function's code, nested code included, refers to."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, pytypes.CodeType):
            names |= _code_names(constant)
    return names


def _top_package(module_name: str | None) -> str:
    return (module_name or "").partition(".")[0]


def _covered_by_source(value: Any, function: pytypes.FunctionType) -> bool:
    """Whether the key already covers the source of ``value`` (a function or an object the
    compiler resolves, such as a numba intrinsic): it is asgdbench's (the project digest), of
    a package whose version is in the key, of the kernel's own file, or of the same outside
    package as the kernel (its package digest)."""
    if not isinstance(value, (pytypes.FunctionType, pytypes.BuiltinFunctionType)) \
            and "__module__" not in getattr(value, "__dict__", {}):
        return False  # an instance (an array): its class's module says nothing of its value
    module = getattr(value, "__module__", None)
    if not isinstance(module, str):
        return False
    top, own = _top_package(module), function.__module__ or ""
    return (top == "asgdbench" or top in _VERSIONED_PACKAGES or module == own
            or ("." in own and top == _top_package(own)))


def _named(name: str, value: Any, naming: tuple[int, ...],
           function: pytypes.FunctionType) -> str | None:
    """``name=...`` for a closure cell or a global a kernel reads; None if the key cannot name
    its value (then the loop is compiled in memory, never cached under a wrong key)."""
    import numpy as np

    if type(value) in _CONSTANT_CELLS:
        return f"{name}={type(value).__name__}:{value!r}"
    if isinstance(value, np.generic):  # a NumPy scalar (np.int32(1)): its dtype and value
        return f"{name}={value.dtype}:{value.item()!r}"
    if id(value) in naming:  # recursion: named by how far up the kernels being named it is
        return f"{name}=(ancestor {len(naming) - 1 - naming.index(id(value))})"
    if getattr(value, "py_func", None) is not None:  # a kernel
        identity = _identity(value, naming)
        return None if identity is None else f"{name}=({identity})"
    if isinstance(value, pytypes.ModuleType):
        if _top_package(value.__name__) in ("asgdbench", *_VERSIONED_PACKAGES):
            return f"{name}=module {value.__name__}"
        path = getattr(value, "__file__", None)
        if not path or not os.path.isfile(path):
            return None
        return f"{name}=module {value.__name__}:{file_digest(path)}"
    from numba.core import types

    if isinstance(value, types.Type):  # a numba type (int64, an external function): its name
        return f"{name}=numba type {value}"
    if isinstance(value, type) or _covered_by_source(value, function):
        return f"{name}={getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
    return None


def kernel_identity(kernel: Any) -> str | None:
    """What a kernel is, for the key; None if the key cannot say what it computes.

    A kernel is named by its module, qualified name, first line, a digest of its bytecode and
    constants, and its source file's digest (two lambdas of one file, or a name defined twice,
    differ in the last three); then by the values it reads:

    - a closure's cells (a kernel a factory made, such as :func:`asgdbench.leashed.variant`'s
      ``update``), and the module globals its code names (a constant computed at import, a
      kernel of a sibling module): each a kernel, named by its identity (one being named
      already, by recursion, as ``(ancestor k)``: k levels up, 0 the kernel itself), a plain
      bool, int, float or str, named by value, a module, named by its file's digest (by name
      if it is asgdbench's or of a package whose version is in the key), or a class or a
      function whose source the key covers, named by name;
    - anything else (an array, an object, a function of another file) makes it None: the key
      cannot see its value. A kernel without a source file is None too.
    """
    return _identity(kernel, ())


def _identity(kernel: Any, naming: tuple[int, ...]) -> str | None:
    """:func:`kernel_identity`; ``naming``: the kernels whose values are being named, outermost
    first."""
    function = getattr(kernel, "py_func", None)
    if function is None:
        return None
    naming = (*naming, id(kernel))
    code = function.__code__
    cells = ""
    if function.__closure__:
        parts = []
        for name, cell in zip(code.co_freevars, function.__closure__):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell: nothing the key can name
                return None
            part = _named(name, value, naming, function)
            if part is None:
                return None
            parts.append(part)
        cells = "[" + ", ".join(parts) + "]"
    module_globals = function.__globals__
    read = []
    for name in sorted(_code_names(code)):
        if name in module_globals and not name.startswith("__"):
            part = _named(name, module_globals[name], naming, function)
            if part is None:
                return None
            if part.startswith(f"{name}=(") and not part.startswith(f"{name}=(ancestor"):
                # a kernel: its (long) identity, digested
                part = f"{name}=(#{hashlib.sha256(part.encode()).hexdigest()[:KEY_CHARS]})"
            read.append(part)
    path = code.co_filename
    if not os.path.isfile(path):
        return None
    module = function.__module__ or ""
    digest = file_digest(path)
    if "." in module and not module.startswith("asgdbench."):  # an outside package
        digest += _package_digest(module) or ""
    return (f"{module}:{function.__qualname__}:{code.co_firstlineno}:{_code_digest(code)}:"
            f"{digest}{cells}{{{', '.join(read)}}}")


def cache_key(template: Any, kernels: Mapping[str, Any], args: tuple) -> str | None:
    """The content hash that names a compiled loop; None if it cannot be cached (see
    :func:`kernel_identity`)."""
    import llvmlite
    import numba
    import numpy
    from numba import typeof
    from numba.core.registry import cpu_target

    # numba's own index key for the machine (target triple, CPU name, features): in ours too,
    # so that nodes of different CPUs sharing a folder never share a file
    machine = cpu_target.target_context.codegen().magic_tuple()
    template_identity = kernel_identity(template)  # its source too: it may live outside
    if template_identity is None:
        return None
    parts = [f"format {FORMAT}", f"machine {machine}", f"template {template_identity}",
             f"project {project_digest()}",
             f"python {sys.version}", f"platform {platform.machine()}",
             f"numba {numba.__version__} opt {numba.config.OPT}",
             f"llvmlite {llvmlite.__version__}", f"numpy {numpy.__version__}"]
    for name in sorted(kernels):
        identity = kernel_identity(kernels[name])
        if identity is None:
            return None
        parts.append(f"kernel {name} {identity}")
    parts.append("args " + repr(tuple(str(typeof(arg)) for arg in args)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:KEY_CHARS]


