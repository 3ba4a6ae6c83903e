"""Turning raw counters into the figures a result reports."""

from __future__ import annotations

from typing import Any

import numpy as np


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
