"""The machine and software a result was measured on: host, CPU, cores, packages, commit, BLAS."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from asgdbench.engine import blas

_PACKAGES = ("asgdbench", "numba", "llvmlite", "numpy", "scipy", "scikit-learn", "threadpoolctl")


def environment() -> dict[str, Any]:
    """The machine and software a result was measured on, the BLAS in use included.

    The BLAS and the load average are read afresh each time (the BLAS's thread
    count is the one in force now: 1 inside a run); the rest is read once.
    """
    return {**_machine(), "blas": [{key: library[key] for key in BLAS_FIELDS}
                                   for library in blas.describe()],
            # 1, 5 and 15 minutes, now: other work sharing the cores (it counts the run's own too)
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


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
        "host": platform.node(),  # which node of a cluster ran it (see asgdbench.study.cluster)
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
    source = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
