"""Test-only gate points: force an exact interleaving of real threads in real kernels.

A kernel marks the places where a preemption could hurt with
``gate(gates, POINT, tid)``. In every normal run ``gates`` is ``None`` and the
call compiles to nothing (numba specialises it away on the argument's type), so
the gates cost nothing. A test passes a :class:`GateBoard`'s array instead; a
thread that reaches a point armed for it parks there until the test releases it.
With that a test replays a feared schedule (use-after-recycle, ABA, a stop
during a barrier) step by step instead of hoping a stress run stumbles on it.

Parked threads also watch the board's abort cell, and every wait on the test's
side has a timeout, so a schedule that goes wrong fails the test instead of
hanging it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
from numba import njit, types
from numba.extending import overload

from asgdbench.primitives.atomics import load, os_yield, store

ROW = 8  # int64 cells per thread row: one cache line
ABORT = 0  # row 0, cell 0: non-zero releases every parked thread for good
ARMED, PARKED_AT, PASSES = 0, 1, 2  # cells of a thread's row
NOT_PARKED = 0  # so gate points start at 1


def gate(gates, point, tid):
    """Park thread ``tid`` at gate ``point`` if a test armed it (no-op when ``gates`` is None)."""


# Not ``inline="always"``: numba's IR-level inlining of an overload runs a dead
# code elimination that can drop a caller's store into an array unpacked from a
# tuple (seen with numba 0.68: Leashed's per-thread cells). LLVM inlines the
# empty call away all the same.
@overload(gate)
def _gate(gates, point, tid):
    if isinstance(gates, (types.NoneType, types.Omitted)):
        return lambda gates, point, tid: None
    return lambda gates, point, tid: _park(gates, point, tid)


@njit(nogil=True, cache=True)
def _park(gates, point, tid):
    row = (tid + 1) * ROW
    store(gates, row + PASSES, gates[row + PASSES] + 1, "release")
    if (load(gates, row + ARMED, "acquire") >> point) & 1 == 0:
        return
    store(gates, row + PARKED_AT, point, "release")
    while load(gates, row + PARKED_AT, "acquire") == point:
        if load(gates, ABORT, "acquire") != 0:
            return
        os_yield()


@njit(nogil=True, cache=True)
def _read_cell(gates, index):
    return load(gates, index, "acquire")


@njit(nogil=True, cache=True)
def _write_cell(gates, index, value):
    store(gates, index, value, "release")


class GateBoard:
    """The test's side of the gates: arm points per thread, wait for a thread to park, release it.

    Gate points are small integers (1..62) that each kernel module names;
    ``tid`` is the thread id the kernel passes to ``gate``.
    """

    def __init__(self, n_threads: int, timeout_s: float = 20.0) -> None:
        self.array = np.zeros((n_threads + 1) * ROW, dtype=np.int64)
        self.timeout_s = timeout_s

    def _cell(self, tid: int, column: int) -> int:
        return (tid + 1) * ROW + column

    def arm(self, tid: int, *points: int) -> None:
        """Thread ``tid`` parks at each of ``points`` (until disarmed)."""
        mask = _read_cell(self.array, self._cell(tid, ARMED))
        for point in points:
            mask |= 1 << point
        _write_cell(self.array, self._cell(tid, ARMED), mask)

    def disarm(self, tid: int, *points: int) -> None:
        """Thread ``tid`` passes ``points`` freely again (all of them if none given)."""
        mask = _read_cell(self.array, self._cell(tid, ARMED))
        for point in points or range(1, 63):
            mask &= ~(1 << point)
        _write_cell(self.array, self._cell(tid, ARMED), mask)

    def parked_at(self, tid: int) -> int:
        return int(_read_cell(self.array, self._cell(tid, PARKED_AT)))

    def passes(self, tid: int) -> int:
        """How many gate points thread ``tid`` has reached, armed or not."""
        return int(_read_cell(self.array, self._cell(tid, PASSES)))

    def wait_parked(self, tid: int, point: int) -> None:
        """Block until thread ``tid`` parks at ``point``; AssertionError after the timeout."""
        deadline = time.monotonic() + self.timeout_s
        while self.parked_at(tid) != point:
            if time.monotonic() > deadline:
                self.abort()
                raise AssertionError(f"thread {tid} never parked at gate {point} "
                                     f"(parked at {self.parked_at(tid)})")
            time.sleep(0.0005)

    def release(self, tid: int) -> None:
        """Let thread ``tid`` go on from the gate it is parked at."""
        _write_cell(self.array, self._cell(tid, PARKED_AT), NOT_PARKED)

    def step(self, tid: int, point: int, *, then_disarm: bool = False) -> None:
        """Wait for ``tid`` at ``point``, optionally disarm it, and release it."""
        self.wait_parked(tid, point)
        if then_disarm:
            self.disarm(tid, point)
        self.release(tid)

    def abort(self) -> None:
        """Release every parked thread and let all gates pass from now on."""
        for tid in range(self.array.size // ROW - 1):
            _write_cell(self.array, self._cell(tid, ARMED), 0)
        _write_cell(self.array, ABORT, 1)


class Actor:
    """One kernel call made in a thread of its own, so that it can park at a gate."""

    def __init__(self, call: Callable[[], Any], name: str = "actor") -> None:
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome["value"] = call()
        except BaseException as error:  # re-raised by result()
            self._outcome["error"] = error

    def result(self, timeout_s: float = 20.0) -> Any:
        """The call's return value; AssertionError if it has not returned within ``timeout_s``."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"{self._thread.name} did not return within {timeout_s:g} s")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
