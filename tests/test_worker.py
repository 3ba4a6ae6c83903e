"""The harness's side of concurrency: the loss log ring, and runs that must end even when a strategy hangs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from numba import njit

from asgdbench.engine.monitor import APPLIED_SEEN, FILLED, NEXT_ENTRY, LossMonitor, _scan
from asgdbench.engine.runner import run
from asgdbench.engine.worker import LossLog, ThreadTelemetry, claim_entry, commit_entry, worker_loop
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.plugins.strategies import Strategy, StrategySpec
from asgdbench.primitives.atomics import load
from asgdbench.primitives.memory import line_private_zeros
from asgdbench.primitives.protocol import (
    APPLIED,
    CONTROL_CELLS,
    DROPPED,
    GO,
    LOG_CURSOR,
    NOT_READ,
    READY,
    STOP,
    STOP_FLAG,
)
from asgdbench.primitives.rng import thread_states

# -- the loss log ----------------------------------------------------------------------


def scan_to_the_end(monitor: LossMonitor, log: LossLog) -> None:
    """Scan until the monitor stops advancing (one scan reads at most one ring)."""
    before = -1
    while monitor.cells[NEXT_ENTRY] != before:
        before = int(monitor.cells[NEXT_ENTRY])
        monitor.scan(log.arrays(), -np.inf, np.inf)


def test_a_writer_lapped_by_a_whole_ring_keeps_the_newer_entry_and_the_monitor_goes_on():
    """Entry 0's writer is preempted between claiming and committing while the ring wraps."""
    log = LossLog.allocate(capacity=4)
    control = np.zeros(CONTROL_CELLS, np.int64)
    stale = claim_entry(control)
    for entry in range(1, 5):  # entry 4 lands in entry 0's slot
        assert claim_entry(control) == entry
        assert commit_entry(log.arrays(), entry, float(entry), entry, APPLIED)
    assert not commit_entry(log.arrays(), stale, 100.0, 0, APPLIED)  # too late: dropped
    assert (log.sequence[0], log.loss[0]) == (5, 4.0)  # entry 4 survives intact

    monitor = LossMonitor.for_window(4)
    scan_to_the_end(monitor, log)
    assert monitor.cells[NEXT_ENTRY] == 5  # read past the lost entry, did not wait on it
    assert monitor.lost_entries == 1
    assert monitor.cells[APPLIED_SEEN] == 4
    assert monitor.smoothed_loss == np.mean([1.0, 2.0, 3.0, 4.0])


def test_the_monitor_waits_for_an_entry_still_being_written():
    log = LossLog.allocate(capacity=8)
    control = np.zeros(CONTROL_CELLS, np.int64)
    pending = claim_entry(control)
    later = claim_entry(control)
    assert commit_entry(log.arrays(), later, 2.0, 0, APPLIED)
    monitor = LossMonitor.for_window(1)
    monitor.scan(log.arrays(), -np.inf, np.inf)
    assert monitor.cells[NEXT_ENTRY] == 0  # in order: entry 0 is not in yet
    assert commit_entry(log.arrays(), pending, 1.0, 0, APPLIED)
    monitor.scan(log.arrays(), -np.inf, np.inf)
    assert monitor.cells[NEXT_ENTRY] == 2 and monitor.lost_entries == 0


def test_an_entry_whose_slot_is_busy_is_dropped_and_skipped_not_waited_for():
    """Entry 4's writer finds entry 0's writer still inside the shared slot."""
    log = LossLog.allocate(capacity=4)
    log.sequence[0] = -1  # entry 0 is being written
    for entry in (1, 2, 3):
        assert commit_entry(log.arrays(), entry, 1.0, entry, APPLIED)
    assert not commit_entry(log.arrays(), 4, 1.0, 4, APPLIED)  # gives up, never waits
    log.loss[0], log.outcome[0], log.sequence[0] = 1.0, APPLIED, 1  # entry 0 is in
    monitor = LossMonitor.for_window(8)
    scan_to_the_end(monitor, log)
    assert monitor.cells[NEXT_ENTRY] == 5 and monitor.lost_entries == 1
    assert monitor.cells[APPLIED_SEEN] == 4


def test_an_entry_rewritten_while_the_monitor_reads_it_is_dropped():
    """The monitor checked entry 0's sequence, then a writer lapping the 1-slot ring replaced it."""
    from asgdbench.engine.monitor import ENTRY_SEEN, LOST_ENTRIES
    from asgdbench.primitives.gates import Actor, GateBoard

    log = LossLog.allocate(capacity=1)
    control = np.zeros(CONTROL_CELLS, np.int64)
    _append(log.arrays(), control, 1)  # entry 0: loss 0, DROPPED
    monitor = LossMonitor.for_window(8)
    board = GateBoard(1)
    board.arm(0, ENTRY_SEEN)
    reader = Actor(lambda: _scan(log.arrays(), monitor.cells, monitor.ring, monitor.sums,
                                 -np.inf, np.inf, board.array), "monitor")
    try:
        board.wait_parked(0, ENTRY_SEEN)
        _append(log.arrays(), control, 1)  # entry 1 (loss 1, APPLIED) takes the slot
        board.disarm(0)
        board.release(0)
        reader.result()
    finally:
        board.abort()
    scan_to_the_end(monitor, log)
    assert monitor.cells[LOST_ENTRIES] == 1  # entry 0: its fields were gone when read
    assert (monitor.cells[FILLED], monitor.cells[APPLIED_SEEN]) == (1, 1)  # entry 1, once


@njit(nogil=True)
def _append(log, control, entries):
    """Append entries whose fields agree: odd ones (loss 1, APPLIED), even ones (loss 0, DROPPED)."""
    for _ in range(entries):
        entry = claim_entry(control)
        odd = entry & 1
        commit_entry(log, entry, float(odd), entry, APPLIED if odd else DROPPED)


@njit(nogil=True)
def _monitor_until(done, log, cells, ring, sums):
    """The monitor's scan in a tight loop (no Python in between) until ``done[0]`` is set."""
    while load(done, 0, "acquire") == 0:
        _scan(log, cells, ring, sums, -np.inf, np.inf)


def test_the_monitor_never_reads_a_torn_entry_from_a_ring_writers_lap():
    """8 writers on a 1-slot ring, the monitor reading all along: every entry read is whole."""
    log = LossLog.allocate(capacity=1)
    control = np.zeros(CONTROL_CELLS, np.int64)
    monitor = LossMonitor.for_window(1 << 22)  # the window sums every loss read
    done = np.zeros(8, np.int64)
    _append(log.arrays(), control, 1)
    _monitor_until(np.ones(8, np.int64), log.arrays(), monitor.cells, monitor.ring, monitor.sums)
    reader = threading.Thread(target=_monitor_until, daemon=True,
                              args=(done, log.arrays(), monitor.cells, monitor.ring, monitor.sums))
    writers = [threading.Thread(target=_append, args=(log.arrays(), control, 300_000),
                                daemon=True) for _ in range(8)]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    done[0] = 1
    reader.join(60)
    assert not reader.is_alive() and not any(w.is_alive() for w in writers)
    scan_to_the_end(monitor, log)
    total = 8 * 300_000 + 1
    assert monitor.cells[NEXT_ENTRY] == control[LOG_CURSOR] == total  # none waited for forever
    read = monitor.cells[FILLED]
    assert read + monitor.lost_entries == total and read > 0
    assert monitor.sums[0] == monitor.cells[APPLIED_SEEN], "an entry was read half old, half new"


# -- the worker loop's own waits ---------------------------------------------------------

@njit(nogil=True)
def _read_nothing(state, tid, control):
    """A read that found the run stopping (as a pin or a lock that gave up does)."""
    return state[0], NOT_READ


@njit(nogil=True)
def _update_counted(state, tid, token, grad, lr, control, rule, rule_state):
    state[1][0] += 1
    return APPLIED, 0, 1, lr


@njit(nogil=True)
def _retire_counted(state, tid):
    state[1][1] += 1


@njit(nogil=True)
def _no_gradient(params, data, rows, work, grad):
    return 0.0


def loop_arguments(read, control: np.ndarray) -> tuple:
    """``worker_loop``'s arguments for thread 0 of a test strategy whose state is
    ``(params, calls)``: ``calls[0]`` counts updates, ``calls[1]`` retires."""
    constant = parse_step_spec("constant")
    state = (np.zeros(4), np.zeros(2, np.int64))
    return (read, _update_counted, _retire_counted, _no_gradient, state, 0, np.zeros((4, 4)), 4,
            (np.zeros(1),), np.zeros(4), np.zeros(1, np.int64), thread_states(0, 1)[0], 0.1,
            constant.rule.step, constant.make_state(1), control, LossLog.allocate(16).arrays(),
            ThreadTelemetry.allocate(1).arrays(), np.zeros(2, np.int64))


def test_a_read_that_returns_not_read_ends_the_loop_without_an_update():
    """The contract: NOT_READ means the run stopped while ``read`` waited; the thread leaves
    at once (no gradient, no ``update``) and gives back what it holds."""
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[GO] = 1  # the start barrier is open; the stop flag is not set
    arguments = loop_arguments(_read_nothing, control)
    loop = threading.Thread(target=worker_loop, args=arguments, daemon=True)
    loop.start()
    loop.join(20)
    control[STOP_FLAG] = 1  # whatever happened, let it end
    loop.join(20)
    calls = arguments[4][1]
    assert calls.tolist() == [0, 1], "update was called after NOT_READ, or retire was not"


def test_the_worker_loop_polls_the_stop_flag_with_an_atomic_load():
    """A plain load of the flag compiles to the same x86 code here, so only the IR shows it;
    it is the loop's one monotonic load (its other waits use acquire)."""
    from conftest import atomic_orderings

    control = np.zeros(CONTROL_CELLS, np.int64)
    control[STOP_FLAG] = 1  # as the runner compiles it: the loop returns at once
    fresh = njit(nogil=True)(worker_loop.py_func)  # numba hides cached IR
    fresh(*loop_arguments(_read_nothing, control))
    assert atomic_orderings(fresh, "worker_loop")["load", "monotonic"] >= 1


# -- a strategy that hangs ------------------------------------------------------------

@njit(nogil=True)
def _read(state, tid, control):
    return state[0], 0


@njit(nogil=True)
def _update_that_hangs(state, tid, token, grad, lr, control, rule, rule_state):
    """Spins until the test lets it go, never looking at the stop flag (a broken plugin)."""
    while load(state[1], 0, "acquire") == 0:
        pass
    return STOP, 0, 0, lr


def test_a_stuck_strategy_becomes_an_error_result_not_a_hung_process():
    release = np.zeros(8, np.int64)
    hangs = Strategy(name="hangs", summary="test only", make_state=lambda p, n: (p.copy(), release),
                     read=_read, update=_update_that_hangs)
    begin = time.monotonic()
    try:
        result = run("probe", StrategySpec(hangs, ()), 2, max_time=0.2, dtype="float64",
                     stop_grace_s=1.0)
    finally:
        release[0] = 1  # let the spinning threads end, whatever happened
    assert time.monotonic() - begin < 30
    assert result.status == "error"
    assert result.stuck_threads == 2
    assert "did not stop" in result.error and "'hangs'" in result.error
    assert result.to_dict()["error"] == result.error


def test_ctrl_c_before_the_start_barrier_opens_leaves_no_worker_behind(monkeypatch):
    """Interrupted between starting the threads and opening the barrier: every worker ends."""
    import pytest

    from asgdbench.engine import runner

    def interrupted(self, threads):
        while self.control[READY] < len(threads):  # all are waiting at the start barrier
            time.sleep(0.001)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner._Run, "_release", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("probe", "lock", 4, max_updates=100, max_time=None, dtype="float64", stop_grace_s=5.0)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("asgdbench-worker")]
    assert not alive, f"workers still running after Ctrl-C: {alive}"


def test_a_ctrl_c_that_something_swallows_still_stops_the_run(monkeypatch, sigint_raises):
    """LLVM calls Python back through ctypes while numba compiles; a KeyboardInterrupt raised
    there is printed and dropped. The run must still stop (it once ran on for its full time)."""
    import signal

    import pytest

    from asgdbench.engine import runner

    compile_kernels = runner._Run._compile

    def compile_then_lose_a_ctrl_c(self):
        seconds = compile_kernels(self)
        try:
            signal.raise_signal(signal.SIGINT)  # the handler raises KeyboardInterrupt here...
        except KeyboardInterrupt:
            pass  # ...and, like a ctypes callback, this drops it
        return seconds

    monkeypatch.setattr(runner._Run, "_compile", compile_then_lose_a_ctrl_c)
    # what a run in the main thread of a CLI process finds
    assert threading.current_thread() is threading.main_thread()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, \
        signal.getsignal(signal.SIGINT)
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    begin = time.monotonic()
    try:
        run("probe", "lock", 2, max_time=20.0, dtype="float64", stop_grace_s=5.0)
    except KeyboardInterrupt:
        pass
    else:
        pytest.fail(f"the run did not raise KeyboardInterrupt (other threads: {others})")
    assert time.monotonic() - begin < 15
    assert not [t for t in threading.enumerate() if t.name.startswith("asgdbench-worker")]


# -- the sparse loop: the same contract on the sparse halves ------------------------------

@njit(nogil=True)
def _read_sparse_nothing(state, tid, control, support, n_support):
    return state[0], NOT_READ


@njit(nogil=True)
def _update_sparse_counted(state, tid, token, support, values, n_support, lr, control, rule,
                           rule_state):
    state[1][0] += 1
    return STOP, 0, 0, lr


@njit(nogil=True)
def _support_of_nothing(data, rows, work, support):
    return 0


@njit(nogil=True)
def _no_sparse_gradient(params, data, rows, work, support, n_support, values):
    return 0.0


def sparse_loop_arguments(control: np.ndarray) -> tuple:
    """``sparse_worker_loop``'s arguments for thread 0, state ``(params, calls)`` as above."""
    constant = parse_step_spec("constant")
    state = (np.zeros(4), np.zeros(2, np.int64))
    return (_read_sparse_nothing, _update_sparse_counted, _retire_counted, _support_of_nothing,
            _no_sparse_gradient, state, 0, np.zeros((4, 4)), 4, (np.zeros(1),),
            np.zeros(4, np.int64), np.zeros(4), np.zeros(1, np.int64), thread_states(0, 1)[0],
            0.1, constant.rule.step, constant.make_state(1), control,
            LossLog.allocate(16).arrays(), ThreadTelemetry.allocate(1).arrays(),
            np.zeros(2, np.int64))


def test_a_sparse_read_that_returns_not_read_ends_the_loop_without_an_update():
    from asgdbench.engine.worker import sparse_worker_loop

    control = np.zeros(CONTROL_CELLS, np.int64)
    control[GO] = 1
    arguments = sparse_loop_arguments(control)
    loop = threading.Thread(target=sparse_worker_loop, args=arguments, daemon=True)
    loop.start()
    loop.join(20)
    control[STOP_FLAG] = 1
    loop.join(20)
    assert arguments[5][1].tolist() == [0, 1], "update was called after NOT_READ, or no retire"


def test_the_sparse_worker_loop_polls_the_stop_flag_with_an_atomic_load():
    from conftest import atomic_orderings

    from asgdbench.engine.worker import sparse_worker_loop

    control = np.zeros(CONTROL_CELLS, np.int64)
    control[STOP_FLAG] = 1
    fresh = njit(nogil=True)(sparse_worker_loop.py_func)
    fresh(*sparse_loop_arguments(control))
    assert atomic_orderings(fresh, "sparse_worker_loop")["load", "monotonic"] >= 1


def lines_of(array: np.ndarray) -> set[int]:
    """The 64-byte cache lines ``array``'s bytes lie on."""
    if array.nbytes == 0:
        return set()
    return set(range(array.ctypes.data // 64, (array.ctypes.data + array.nbytes - 1) // 64 + 1))


@pytest.mark.parametrize("shape, dtype", [(1, np.int64), (2, np.int64), ((3, 8), np.uint64),
                                          (7, np.float32), ((5, 3), np.float64), (0, np.int64)])
def test_line_private_arrays_start_on_a_line_and_own_the_lines_they_touch(shape, dtype):
    neighbours = [np.ones(3, np.int8) for _ in range(50)]  # small blocks all around
    arrays = [line_private_zeros(shape, dtype) for _ in range(20)]
    neighbours += [np.ones(5, np.int16) for _ in range(50)]
    for array in arrays:
        assert array.shape == (shape if isinstance(shape, tuple) else (shape,))
        assert array.dtype == dtype and array.flags.c_contiguous and not array.any()
        assert array.nbytes == 0 or array.ctypes.data % 64 == 0  # an empty one points nowhere
        owner = array.base  # the padded block: every line the array touches is in it
        while owner.base is not None:
            owner = owner.base
        whole = range(owner.ctypes.data, owner.ctypes.data + owner.nbytes)
        for line in lines_of(array):
            assert line * 64 in whole and line * 64 + 63 in whole
    touched = [lines_of(a) for a in arrays + neighbours]
    for i, mine in enumerate(touched[:len(arrays)]):
        others = set().union(*(lines for j, lines in enumerate(touched) if j != i))
        assert not mine & others


def test_a_runs_per_thread_scratch_and_telemetry_share_no_cache_line_between_threads(
        monkeypatch):
    """What each worker writes on every update (its random state, minibatch rows, clock
    scratch, gradient or support buffers, telemetry rows) lies on lines no other thread
    writes: the harness adds no false sharing to a strategy's updates."""
    from asgdbench.engine import runner

    seen = []
    compile_kernels = runner._Run._compile

    def remember(self):
        seen.append(self)
        return compile_kernels(self)

    monkeypatch.setattr(runner._Run, "_compile", remember)
    for workload in ("probe", "probe-sparse"):
        result = run(workload, "hogwild", 4, max_updates=200, max_time=None, dtype="float64")
        assert result.updates_applied >= 200
        threads = seen[-1]
        telemetry = threads.telemetry.arrays()
        per_thread = []
        for tid, setup in enumerate(threads.setups):
            buffers = [setup.rows, setup.timespec, setup.rng, setup.grad]
            buffers += [b for b in (setup.support, setup.values) if b is not None]
            buffers += [array[tid] for array in telemetry]
            per_thread.append(set().union(*(lines_of(b) for b in buffers)))
        for tid, mine in enumerate(per_thread):
            for other, theirs in enumerate(per_thread):
                assert other == tid or not mine & theirs, (workload, tid, other)
