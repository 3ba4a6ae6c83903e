"""The withdrawable barrier, under the schedule that breaks a blind withdrawal, and SYNC under stops."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from conftest import assert_probe_exact, run_watched

from asgdbench.primitives.barrier import STOP_SEEN, barrier_wait
from asgdbench.primitives.gates import Actor, GateBoard

GENERATION = 1 << 32
_BOARDS: list[tuple[GateBoard, np.ndarray]] = []


@pytest.fixture(autouse=True)
def _release_everything():
    """Whatever a test did, no waiter it started spins on after it."""
    yield
    while _BOARDS:
        board, stop = _BOARDS.pop()
        stop[0] = 1
        board.abort()


def new_barrier(parties: int) -> tuple[GateBoard, np.ndarray, np.ndarray]:
    board = GateBoard(parties)
    stop = np.zeros(8, np.int64)
    _BOARDS.append((board, stop))
    return board, np.zeros(8, np.int64), stop


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the schedule to get there"
        time.sleep(0.0005)


def test_a_waiter_that_sees_stop_as_the_barrier_opens_goes_through():
    """T0 waits, sees the stop flag and is preempted; T1 arrives and opens the barrier.

    T0 must not withdraw from a barrier that already opened (T1 is past it and
    applying its half of the round): it has to return True, and the barrier
    word must be the next generation with nobody arrived.
    """
    board, barrier, stop = new_barrier(2)
    board.arm(0, STOP_SEEN)
    waiter = Actor(lambda: barrier_wait(barrier, 0, 2, stop, 0, board.array, 0), "T0")
    wait_until(lambda: barrier[0] == 1)  # T0 has arrived
    stop[0] = 1
    board.wait_parked(0, STOP_SEEN)
    assert barrier_wait(barrier, 0, 2, stop, 0, board.array, 1) is True  # T1 opens it
    board.disarm(0)
    board.release(0)
    assert waiter.result() is True
    assert barrier[0] == GENERATION


def test_a_waiter_withdraws_cleanly_when_the_barrier_never_opens():
    board, barrier, stop = new_barrier(3)
    waiters = [Actor(lambda tid=tid: barrier_wait(barrier, 0, 3, stop, 0, board.array, tid))
               for tid in range(2)]
    wait_until(lambda: barrier[0] == 2)
    assert all(w.running for w in waiters)
    stop[0] = 1
    assert [w.result() for w in waiters] == [False, False]
    assert barrier[0] == 0  # both arrivals undone, same generation


def test_sync_stops_mid_round_without_deadlock():
    """Many short timed runs: each stops wherever its threads are, and returns."""
    durations = itertools.cycle([0.05, 0.1, 0.2, 0.07])
    for _ in range(20):
        result = run_watched("probe", "sync", 16, max_time=next(durations), dtype="float64",
                             watchdog_s=30.0)
        assert result.status == "timeout"
        assert_probe_exact(result, result.updates_applied)  # no round applied by halves
