"""Stop rules, judged off the workers' critical path from the loss log.

The runner's main thread wakes every few milliseconds and scans the log
entries that workers appended since its last look, in log order. It keeps the smoothed loss
(mean of the last ``window`` minibatch losses) and notes the first entry at
which it reached the target (epsilon-convergence) or diverged. The exact time
and update count come from that entry's own timestamp, not from when the
monitor happened to wake, so polling adds no error to time-to-target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from asgdbench.primitives.atomics import fence, load
from asgdbench.primitives.gates import gate
from asgdbench.primitives.protocol import APPLIED

RUNNING, REACHED, DIVERGED = 0, 1, 2

ENTRY_SEEN = 20  # test-only gate point: an entry's sequence checked, its fields not yet read

# cells of the monitor's int64 state
NEXT_ENTRY, APPLIED_SEEN, FILLED, EVENT, EVENT_TIME_NS, EVENT_UPDATES, LOST_ENTRIES = range(7)


@dataclass(frozen=True)
class StopRule:
    """When a run ends. ``None`` disables a rule; the first rule to fire wins."""

    target_loss: float | None
    max_time: float | None
    max_updates: int | None
    diverge_factor: float = 10.0
    window: int = 64

    def divergence_limit(self, initial_loss: float) -> float:
        return self.diverge_factor * initial_loss if self.diverge_factor else math.inf


@dataclass
class LossMonitor:
    """Running smoothed loss and the first event (target reached or diverged)."""

    cells: np.ndarray
    ring: np.ndarray
    sums: np.ndarray  # [window sum, smoothed loss]

    @classmethod
    def for_window(cls, window: int) -> "LossMonitor":
        return cls(np.zeros(8, np.int64), np.zeros(window, np.float64), np.zeros(2, np.float64))

    def scan(self, log: tuple, target: float, divergence_limit: float) -> int:
        return _scan(log, self.cells, self.ring, self.sums, target, divergence_limit)

    @property
    def event(self) -> int:
        return int(self.cells[EVENT])

    @property
    def smoothed_loss(self) -> float:
        return float(self.sums[1]) if self.cells[FILLED] else math.nan

    @property
    def applied_seen(self) -> int:
        return int(self.cells[APPLIED_SEEN])

    @property
    def lost_entries(self) -> int:
        """Entries overwritten before the monitor read them (it fell a whole ring behind)."""
        return int(self.cells[LOST_ENTRIES])


@njit(nogil=True, cache=True)
def _scan(log, cells, ring, sums, target, divergence_limit, gates=None):
    """Consume the complete log entries, in order, at most one ring per call; the event so far.

    ``gates``: test-only (:mod:`asgdbench.primitives.gates`), thread id 0.
    """
    sequence, losses, times, outcomes, skipped = log
    capacity = sequence.shape[0]
    window = ring.shape[0]
    for _ in range(capacity):  # bounded, so that the caller regains control
        entry = cells[NEXT_ENTRY]
        slot = entry & (capacity - 1)
        seen = load(sequence, slot, "acquire")
        if seen != entry + 1:
            writing = seen == -(entry + 1)
            if seen > entry + 1 or (seen < 0 and not writing) or (
                    not writing and load(skipped, slot, "acquire") > entry):
                cells[LOST_ENTRIES] += 1  # overwritten, or its writer gave the slot up
                cells[NEXT_ENTRY] = entry + 1
                continue
            break  # not written yet, or being written
        gate(gates, ENTRY_SEEN, 0)
        loss = losses[slot]
        applied = outcomes[slot] == APPLIED
        time_ns = times[slot]
        fence("acquire")  # the reads above stay before the re-check below
        if load(sequence, slot, "monotonic") != entry + 1:  # rewritten while read: torn
            cells[LOST_ENTRIES] += 1
            cells[NEXT_ENTRY] = entry + 1
            continue
        if applied:
            cells[APPLIED_SEEN] += 1
        filled = cells[FILLED]
        position = filled % window
        if filled >= window:
            sums[0] -= ring[position]
        ring[position] = loss
        sums[0] += loss
        cells[FILLED] = filled + 1
        if position == window - 1:  # re-add now and then so rounding never drifts
            sums[0] = ring.sum()
        count = min(filled + 1, window)
        sums[1] = sums[0] / count
        cells[NEXT_ENTRY] = entry + 1
        if cells[EVENT] == 0:
            if not np.isfinite(loss) or (count == window and sums[1] > divergence_limit):
                event = 2
            elif count == window and sums[1] <= target:
                event = 1
            else:
                event = 0
            if event != 0:
                cells[EVENT] = event
                cells[EVENT_TIME_NS] = time_ns
                cells[EVENT_UPDATES] = cells[APPLIED_SEEN]
    return cells[EVENT]


@dataclass
class LiveVectorSampler:
    """Time-averaged live parameter vectors, from samples the runner takes while it polls.

    Each sample holds until the next one (a step function), so the mean weighs
    every count by how long it lasted; the peak a strategy reports after the
    run says how high it went, this says where it stayed.
    """

    points: list[tuple[float, int]]

    @classmethod
    def empty(cls) -> "LiveVectorSampler":
        return cls([])

    def sample(self, seconds: float, count: int) -> None:
        self.points.append((seconds, int(count)))

    def summary(self, end_s: float, trace_limit: int = 200) -> dict:
        """``mean`` (time-weighted), ``max`` sampled, ``samples``, and a ``trace`` of [s, count]."""
        if not self.points:
            return {}
        weighted, last_count = 0.0, self.points[-1][1]
        for (start, count), (stop, _) in zip(self.points, self.points[1:]):
            weighted += count * (stop - start)
        span = max(end_s, self.points[-1][0]) - self.points[0][0]
        weighted += last_count * (span - (self.points[-1][0] - self.points[0][0]))
        counts = [count for _, count in self.points]
        # a weighted mean lies between the counts it weighs; rounding may push it past them
        mean = (min(max(weighted / span, min(counts)), max(counts)) if span > 0
                else float(last_count))
        step = max(1, -(-len(self.points) // trace_limit))
        trace = [list(point) for point in self.points[::step]]
        if trace[-1] != list(self.points[-1]):
            trace.append(list(self.points[-1]))
        return {"mean": mean, "max": max(counts),
                "samples": len(self.points), "trace": trace}
