"""Checks a run must pass before anything is allocated: threads, batch size, memory.

Each limit is something that otherwise ends a run natively or takes the
machine down: a thread count the loaded BLAS cannot serve (a segfault), one
the process cannot start (``can't start new thread`` after minutes of
allocating), a minibatch larger than the data set, or workspaces larger than
the memory left. Each failure is a :class:`~asgdbench.errors.ConfigError`
whose message is one line saying what the limit is and why.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from asgdbench.engine import blas
from asgdbench.engine.run_result import RunConfig
from asgdbench.engine.worker import LossLog, ThreadTelemetry
from asgdbench.errors import ConfigError
from asgdbench.plugins.strategies import StrategySpec
from asgdbench.plugins.workloads import Workload

MEMORY_HEADROOM = 0.9
"""Refuse a run whose estimate exceeds this share of the memory available."""


def check(workload: Workload, spec: StrategySpec, config: RunConfig) -> None:
    """Refuse ``config`` on ``workload`` if the process or the machine cannot run it.

    The BLAS thread limit needs no workload, so :func:`asgdbench.engine.plan.validate_config`
    checks it (:func:`check_blas_threads`) with the rest of a configuration, before
    any data is loaded.
    """
    check_sparse_path(workload, spec)
    check_batch_size(workload, config.batch_size)
    check_memory(workload, spec, config)
    check_threads_start(config.threads)


def check_sparse_path(workload: Workload, spec: StrategySpec) -> None:
    """A sparse workload runs only under a strategy with a sparse path (no densifying fallback)."""
    if workload.sparse and not spec.strategy.has_sparse_path:
        raise ConfigError(f"strategy {spec.name!r} has no sparse path (read_sparse/update_sparse); "
                          f"workload {workload.name!r} is sparse")


def check_batch_size(workload: Workload, batch_size: int) -> None:
    """A minibatch is drawn from the training set, so it is at most the training set."""
    if batch_size > workload.n_samples:
        raise ConfigError(f"batch size {batch_size:,} is larger than the training set of "
                          f"{workload.name} ({workload.n_samples:,} samples)")


def check_blas_threads(threads: int) -> None:
    """At most as many threads as the loaded BLAS can serve at once (see :mod:`asgdbench.engine.blas`)."""
    limit = blas.thread_limit()
    if limit is not None and threads > limit.threads:
        raise ConfigError(f"{threads} threads is more than this process can run: at most "
                          f"{limit.threads}, because {limit.reason}")


def check_threads_start(threads: int) -> None:
    """Start ``threads`` idle threads and let them go: proof the process can start the workers."""
    release = threading.Event()
    started: list[threading.Thread] = []
    try:
        for _ in range(threads):
            thread = threading.Thread(target=release.wait, name="asgdbench-preflight",
                                      daemon=True)
            thread.start()
            started.append(thread)
    except RuntimeError as error:  # "can't start new thread"
        raise ConfigError(f"this process cannot start {threads} threads: the system refused "
                          f"thread {len(started) + 1} ({error})") from None
    finally:
        release.set()
        for thread in started:
            thread.join()


def estimate_bytes(workload: Workload, spec: StrategySpec, config: RunConfig) -> int:
    """Bytes a run allocates beyond the loaded data: parameter vectors and per-thread buffers.

    Workspaces are measured, not guessed: one is built for a batch of 1 and one
    for a batch of 2, and their size is extrapolated linearly in the batch size
    (every workload's scratch is a set of batch-sized arrays).
    """
    vector = workload.n_params * workload.dtype.itemsize
    vectors = spec.strategy.max_param_vectors(config.threads) * vector
    one, two = (_nbytes(workload.make_workspace(batch)) for batch in (1, 2))
    workspace = one + (two - one) * (config.batch_size - 1)
    rows = config.batch_size * np.dtype(np.int64).itemsize
    gradient = vector  # a sparse run holds the support and its values instead
    if workload.sparse:
        gradient = int(workload.max_support(config.batch_size)) * (
            np.dtype(np.int64).itemsize + workload.dtype.itemsize)
    per_thread = workspace + rows + gradient + _nbytes(ThreadTelemetry.allocate(1).__dict__)
    log = _nbytes(LossLog.allocate().arrays())
    return vectors + config.threads * per_thread + log


def check_memory(workload: Workload, spec: StrategySpec, config: RunConfig) -> None:
    """Refuse a run whose buffers would not fit in the memory the machine has left."""
    available = available_memory()
    if available is None:
        return
    needed = estimate_bytes(workload, spec, config)
    if needed > MEMORY_HEADROOM * available:
        raise ConfigError(
            f"this run would allocate about {_gib(needed)} (batch size {config.batch_size:,}, "
            f"{config.threads} threads, up to {spec.strategy.max_param_vectors(config.threads)} "
            f"parameter vectors) but only {_gib(available)} of memory is available: lower "
            f"--batch-size or --threads")


def available_memory() -> int | None:
    """Bytes this process may still allocate: the system's available memory, within any cgroup limit."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            candidates.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    if not candidates and hasattr(os, "sysconf"):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(candidates) if candidates else None


def _nbytes(arrays: Any) -> int:
    """Total bytes of the arrays in a (nested) tuple, list or dict."""
    if isinstance(arrays, np.ndarray):
        return arrays.nbytes
    if isinstance(arrays, dict):
        arrays = list(arrays.values())
    if isinstance(arrays, (tuple, list)):
        return sum(_nbytes(item) for item in arrays)
    return 0


def _gib(count: int) -> str:
    """Bytes as GiB, or MiB below one GiB."""
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"
