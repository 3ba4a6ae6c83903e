"""The BLAS the gradient kernels call: loading it, describing it, and how many threads it can serve.

numba compiles ``np.dot`` into calls to SciPy's BLAS, which it binds lazily,
so :func:`load` imports it before anything inspects or limits it.

OpenBLAS (built without its thread-local allocator, as the NumPy and SciPy
wheels are) hands every thread that enters a level-2/3 call a buffer from a
fixed table of ``max(50, 2 * MAX_THREADS)`` slots, and each thread of its own
pool holds one slot for good. When a thread finds the table full, OpenBLAS
prints ``precompiled NUM_THREADS exceeded`` and switches to an overflow path
that crashes the process (SIGSEGV, ``Bad memory unallocation!``).
``OPENBLAS_NUM_THREADS=1`` does not help: the slots are taken by the calling
threads, not by BLAS's own. A run may therefore use at most as many worker
threads as there are slots left; :func:`thread_limit` computes that number
from the libraries actually loaded.
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass
from typing import Any

from threadpoolctl import ThreadpoolController, threadpool_limits

MIN_OPENBLAS_SLOTS = 50  # OpenBLAS: NUM_BUFFERS = MAX(50, MAX_CPU_NUMBER * 2 * MAX_PARALLEL_NUMBER)


def load() -> None:
    """Load the BLAS that numba's ``np.dot`` calls (SciPy's), so that threadpoolctl sees it."""
    import scipy.linalg.cython_blas  # noqa: F401


def single_threaded() -> threadpool_limits:
    """Limit every loaded BLAS to one thread (per calling thread), the one numba calls included."""
    load()
    return threadpool_limits(limits=1, user_api="blas")


def describe() -> list[dict[str, Any]]:
    """Every loaded BLAS: library, version, kernel (``architecture``), threads, build config.

    Recorded in each run's environment, because the kernel decides GEMM speed:
    OpenBLAS's Haswell kernel runs fp32 GEMM at about half the speed of its
    SkylakeX kernel on CPUs that have both.
    """
    load()
    described = []
    for library in ThreadpoolController().select(user_api="blas").lib_controllers:
        info = library.info()
        described.append({
            "internal_api": info.get("internal_api"),
            "prefix": info.get("prefix"),
            "version": info.get("version"),
            "architecture": info.get("architecture"),
            "threading_layer": info.get("threading_layer"),
            "num_threads": info.get("num_threads"),
            "config": _openblas_config(library),
            "filepath": info.get("filepath"),
        })
    return described


def label(description: dict[str, Any]) -> str:
    """A short name of one BLAS, e.g. ``openblas 0.3.30 Haswell``."""
    parts = [description.get("internal_api"), description.get("version"),
             description.get("architecture")]
    return " ".join(str(part) for part in parts if part)


@dataclass(frozen=True)
class ThreadLimit:
    """The most threads that may call one BLAS at once, and why."""

    threads: int
    reason: str


def openblas_slots(config: str) -> int | None:
    """Size of an OpenBLAS's per-thread buffer table, from ``openblas_get_config()``.

    e.g. ``OpenBLAS 0.3.30 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64`` has
    128 slots; None when the config does not say.
    """
    match = re.search(r"MAX_THREADS=(\d+)", config)
    return None if match is None else max(MIN_OPENBLAS_SLOTS, 2 * int(match.group(1)))


def thread_limit() -> ThreadLimit | None:
    """The tightest thread limit among the loaded BLAS libraries (None: no known limit)."""
    limits = []
    for description in describe():
        slots = openblas_slots(description.get("config") or "")
        if description.get("internal_api") != "openblas" or slots is None:
            continue
        # When loaded, OpenBLAS starts min(cores, MAX_THREADS) - 1 pool threads (fewer if
        # OPENBLAS_NUM_THREADS says so), each holding a slot: count the most it may have.
        started = max(description.get("num_threads") or 1, min(os.cpu_count() or 1, slots // 2))
        pool = started - 1
        library = os.path.basename(description.get("filepath") or "")
        limits.append(ThreadLimit(slots - pool, (
            f"the loaded {label(description)} ({library}) has {slots} per-thread buffers, "
            f"{pool} of them held by its own thread pool, and crashes the process when more "
            f"threads call it at once")))
    return min(limits, key=lambda limit: limit.threads, default=None)


def _openblas_config(library: Any) -> str | None:
    """``openblas_get_config()`` of an OpenBLAS threadpoolctl controller (None for others)."""
    if getattr(library, "internal_api", None) != "openblas":
        return None
    try:
        function = library._get_symbol("openblas_get_config")
    except Exception:  # noqa: BLE001 - threadpoolctl internals differ across versions
        function = None
    if function is None:
        return None
    function.restype = ctypes.c_char_p
    value = function()
    return value.decode(errors="replace").strip() if value else None
