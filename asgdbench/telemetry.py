"""Turning raw counters into the figures a result reports, and describing the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from asgdbench import blas

_PACKAGES = ("asgdbench", "numba", "llvmlite", "numpy", "scipy", "scikit-learn", "threadpoolctl")


def histogram_summary(histogram: np.ndarray, exact_max: int | None = None,
                      exact_sum: int | None = None) -> dict[str, Any]:
    """Mean, p50, p99, p99.9 and max of a histogram whose bin i counts the value i.

    The last bin also holds everything above it, so pass ``exact_max`` and
    ``exact_sum`` (tracked separately) to report the true maximum and mean. The
    histogram itself is kept as a sparse ``{value: count}`` map.
    """
    counts = np.asarray(histogram, dtype=np.int64)
    total = int(counts.sum())
    nonzero = np.flatnonzero(counts)
    summary: dict[str, Any] = {
        "count": total,
        "histogram": {str(int(v)): int(counts[v]) for v in nonzero},
    }
    if total == 0:
        return summary | {"mean": None, "p50": None, "p99": None, "p999": None, "max": None}
    values = np.arange(counts.size)
    cumulative = np.cumsum(counts)
    summary["mean"] = float((exact_sum if exact_sum is not None else (values * counts).sum())
                            / total)
    summary["p50"] = int(np.searchsorted(cumulative, 0.50 * total))
    summary["p99"] = int(np.searchsorted(cumulative, 0.99 * total))
    summary["p999"] = int(np.searchsorted(cumulative, 0.999 * total))
    summary["max"] = int(exact_max) if exact_max is not None else int(nonzero[-1])
    return summary


def downsample_trace(points: list[tuple[float, int, float]], limit: int = 1000) -> list[list]:
    """At most ``limit`` evenly spread trace points, always keeping the last."""
    if len(points) <= limit:
        return [list(p) for p in points]
    keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [list(points[i]) for i in keep]


def environment() -> dict[str, Any]:
    """The machine and software a result was measured on, the BLAS in use included.

    The BLAS is described afresh each time (its thread count is the one in
    force now: 1 inside a run); the rest is read once.
    """
    return {**_machine(), "blas": [{key: library[key] for key in BLAS_FIELDS}
                                   for library in blas.describe()]}


BLAS_FIELDS = ("internal_api", "version", "architecture", "threading_layer", "num_threads",
               "config", "filepath")


@lru_cache(maxsize=1)
def _machine() -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """The commit of the checkout asgdbench runs from, if it runs from one."""
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
