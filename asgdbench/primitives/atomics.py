"""CPU atomics, spin hints and a blocking OS mutex for ``@njit(nogil=True)`` code.

numba has no atomics of its own; these intrinsics emit LLVM's ``cmpxchg``,
``atomicrmw`` and atomic loads/stores on a cell of an int64 array, so that
lock-free strategies can be written in nopython code that runs without the GIL.
Memory orderings are LLVM's names: ``"monotonic"`` (relaxed), ``"acquire"``,
``"release"``, ``"acq_rel"`` and ``"seq_cst"``; they must be string literals.

The mutex is a real ``pthread_mutex_t`` (the paper's baseline uses a
``std::mutex``, which blocks in the kernel rather than spinning): its storage is
a NumPy byte array initialised by ``pthread_mutex_init`` and locked from numba
through ctypes function pointers.
"""

from __future__ import annotations

import ctypes
import platform
import weakref

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = [
    "cas",
    "fetch_add",
    "load",
    "store",
    "fence",
    "cpu_pause",
    "os_yield",
    "new_mutex",
    "mutex_lock",
    "mutex_unlock",
]

_ORDERINGS = ("monotonic", "acquire", "release", "acq_rel", "seq_cst")
_LOAD_ORDERINGS = ("monotonic", "acquire", "seq_cst")
_STORE_ORDERINGS = ("monotonic", "release", "seq_cst")


def _check_cell(array_type, index_type) -> None:
    if not (
        isinstance(array_type, types.Array)
        and array_type.dtype == types.int64
        and array_type.ndim == 1
        and isinstance(index_type, types.Integer)
    ):
        raise TypingError(f"atomics operate on a cell of a 1-D int64 array, given as (array, "
                          f"index); got ({array_type}, {index_type})")


def _ordering(literal, allowed) -> str | None:
    """The literal ordering's name; None asks numba to retry with literal types."""
    if not isinstance(literal, types.StringLiteral):
        return None
    if literal.literal_value not in allowed:
        raise TypingError(f"memory ordering must be one of {allowed}, not "
                          f"{literal.literal_value!r}")
    return literal.literal_value


def _cell_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index], wraparound=False)


@intrinsic
def _cas(typingctx, array, index, expected, desired):
    _check_cell(array, index)
    sig = types.int64(array, index, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return sig, codegen


@njit(inline="always")
def cas(array, index, expected, desired):
    """Compare-and-swap ``array[index]`` (seq_cst); returns the value seen.

    The swap happened exactly when the returned value equals ``expected``.
    """
    return _cas(array, index, np.int64(expected), np.int64(desired))


@intrinsic
def _fetch_add(typingctx, array, index, delta):
    _check_cell(array, index)
    sig = types.int64(array, index, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@njit(inline="always")
def fetch_add(array, index, delta):
    """Atomically add ``delta`` to ``array[index]`` (seq_cst); returns the old value."""
    return _fetch_add(array, index, np.int64(delta))


@intrinsic
def load(typingctx, array, index, ordering):
    """Atomic load of ``array[index]`` with the given memory ordering."""
    _check_cell(array, index)
    order = _ordering(ordering, _LOAD_ORDERINGS)
    if order is None:
        return None
    sig = types.int64(array, index, ordering)

    def codegen(context, builder, signature, args):
        ptr = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, order, 8)

    return sig, codegen


@intrinsic
def _store(typingctx, array, index, value, ordering):
    _check_cell(array, index)
    order = _ordering(ordering, _STORE_ORDERINGS)
    if order is None:
        return None
    sig = types.void(array, index, types.int64, ordering)

    def codegen(context, builder, signature, args):
        ptr = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, order, 8)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def store(array, index, value, ordering):
    """Atomic store of ``value`` into ``array[index]`` with the given memory ordering."""
    _store(array, index, np.int64(value), ordering)


@intrinsic
def fence(typingctx, ordering):
    """A memory fence (``"acquire"``, ``"release"``, ``"acq_rel"`` or ``"seq_cst"``).

    A seqlock reader needs one between reading the data and re-reading the
    sequence word: an acquire load alone does not keep earlier loads before it.
    """
    order = _ordering(ordering, ("acquire", "release", "acq_rel", "seq_cst"))
    if order is None:
        return None
    sig = types.void(ordering)

    def codegen(context, builder, signature, args):
        builder.fence(order)
        return context.get_dummy_value()

    return sig, codegen


def _emit_pause(builder) -> None:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
        )
        builder.call(fn, [])
    elif machine in ("aarch64", "arm64"):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]), "llvm.aarch64.hint"
        )
        builder.call(fn, [ir.Constant(ir.IntType(32), 1)])  # hint #1 is YIELD


@intrinsic
def cpu_pause(typingctx):
    """Spin-wait hint (x86 ``pause``, Arm ``yield``); a no-op elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        _emit_pause(builder)
        return context.get_dummy_value()

    return sig, codegen


# Declared by symbol name rather than as ctypes pointers, so that kernels using
# them stay cacheable on disk. The symbols are in libc (glibc >= 2.34, macOS) or
# in libpthread, which the Python interpreter has already loaded.
_sched_yield = types.ExternalFunction("sched_yield", types.int32())
_pthread_mutex_lock = types.ExternalFunction("pthread_mutex_lock", types.int32(types.intp))
_pthread_mutex_unlock = types.ExternalFunction("pthread_mutex_unlock", types.int32(types.intp))

_libc = ctypes.CDLL(None)  # the process namespace: libc and libpthread
_pthread_mutex_init = _libc.pthread_mutex_init
_pthread_mutex_init.restype = ctypes.c_int
_pthread_mutex_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_pthread_mutex_destroy = _libc.pthread_mutex_destroy
_pthread_mutex_destroy.restype = ctypes.c_int
_pthread_mutex_destroy.argtypes = [ctypes.c_void_p]

# Larger than pthread_mutex_t on every mainstream platform (40 bytes on
# glibc/x86-64, 64 on macOS); a whole cache line keeps it off its neighbours.
MUTEX_BYTES = 128


@njit(inline="always")
def os_yield():
    """Give the core to another runnable thread (``sched_yield``)."""
    _sched_yield()


def new_mutex() -> np.ndarray:
    """Allocate and initialise one OS mutex; pass the array to ``mutex_lock``.

    The mutex is destroyed (``pthread_mutex_destroy``) when the array is
    garbage-collected.
    """
    storage = np.zeros(MUTEX_BYTES, dtype=np.uint8)
    code = _pthread_mutex_init(storage.ctypes.data, None)
    if code != 0:
        raise OSError(code, "pthread_mutex_init failed")
    weakref.finalize(storage, _pthread_mutex_destroy, storage.ctypes.data)
    return storage


@njit(inline="always")
def mutex_lock(mutex):
    """Block until the OS mutex in ``mutex`` (from ``new_mutex``) is held; 0, or an errno."""
    return _pthread_mutex_lock(mutex.ctypes.data)


@njit(inline="always")
def mutex_unlock(mutex):
    """Release the OS mutex in ``mutex``; 0, or an errno."""
    return _pthread_mutex_unlock(mutex.ctypes.data)
