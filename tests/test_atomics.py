"""asgdbench.primitives.atomics: exact under contention from more threads than cores.

Each contention kernel below runs in many Python threads at once for a fixed
time, counting what it did; ``nogil`` lets the threads really run in parallel,
and with more threads than cores they are also preempted in the middle of their
loops, which is when a broken atomic loses counts. The shared result must then
equal the sum of the threads' own counts.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Callable

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from asgdbench.primitives.atomics import (
    cas,
    cpu_pause,
    fence,
    fetch_add,
    load,
    mutex_lock,
    mutex_unlock,
    new_mutex,
    os_yield,
    store,
)

THREADS = 16  # well above the cores of a CI runner
CONTENTION_S = 0.25
JOIN_TIMEOUT_S = 60.0


def run_contended(kernel: Callable, *args) -> list[int]:
    """``kernel(stop, *args)`` in ``THREADS`` threads until ``stop`` is set; their counts.

    The kernel is compiled first (with ``stop`` already set), so that compiling
    does not eat into the time the threads spend together.
    """
    assert kernel(np.ones(1, np.int64), *args) == 0
    stop = np.zeros(1, np.int64)
    counts = [0] * THREADS

    def body(tid: int) -> None:
        counts[tid] = kernel(stop, *args)

    threads = [threading.Thread(target=body, args=(tid,), daemon=True) for tid in range(THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(CONTENTION_S)
    stop[0] = 1
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a thread never saw the stop flag"
    assert all(count > 0 for count in counts), "a thread never ran"
    return counts


# -- kernels -------------------------------------------------------------------------

@njit(nogil=True)
def add_until_stopped(stop, cells, index):
    n = 0
    while load(stop, 0, "monotonic") == 0:
        fetch_add(cells, index, 1)
        n += 1
    return n


@njit(nogil=True)
def cas_increment_until_stopped(stop, cells, index):
    """Increment by a CAS retry loop."""
    n = 0
    while load(stop, 0, "monotonic") == 0:
        while True:
            seen = load(cells, index, "monotonic")
            if cas(cells, index, seen, seen + 1) == seen:
                break
        n += 1
    return n


@njit(nogil=True)
def locked_increments_until_stopped(stop, mutex, counter, occupancy, overlaps):
    """Plain read-modify-write under the mutex, counting entries to an occupied section."""
    n = 0
    while load(stop, 0, "monotonic") == 0:
        mutex_lock(mutex)
        if fetch_add(occupancy, 0, 1) != 0:
            fetch_add(overlaps, 0, 1)
        value = counter[0]
        for _ in range(4):  # widen the window in which a second holder would show
            cpu_pause()
        counter[0] = value + 1
        fetch_add(occupancy, 0, -1)
        mutex_unlock(mutex)
        n += 1
    return n


@njit(nogil=True)
def wait_for(cell, value):
    """Spin until ``cell[0] == value``: pause first, then yield the core."""
    spins = 0
    while load(cell, 0, "acquire") != value:
        if spins < 64:
            cpu_pause()
        else:
            os_yield()
        spins += 1


@njit(nogil=True)
def produce(turn, payload, n):
    """Round k: wait for turn 2k, write the payload, release turn 2k + 1."""
    for k in range(n):
        wait_for(turn, 2 * k)
        payload[0] = k
        payload[1] = -k
        store(turn, 0, 2 * k + 1, "release")


@njit(nogil=True)
def consume(turn, payload, seen, n):
    """Round k: wait for turn 2k + 1, read the payload (-1 if torn), release turn 2k + 2."""
    for k in range(n):
        wait_for(turn, 2 * k + 1)
        seen[k] = payload[0] if payload[1] == -payload[0] else -1
        store(turn, 0, 2 * k + 2, "release")


# -- contention ----------------------------------------------------------------------

def test_fetch_add_counts_exactly_under_contention():
    cells = np.zeros(16, np.int64)
    counts = run_contended(add_until_stopped, cells, 3)
    assert cells[3] == sum(counts)
    assert np.count_nonzero(cells) == 1  # the neighbouring cells are untouched


def test_cas_loop_counts_exactly_under_contention():
    cells = np.zeros(8, np.int64)
    counts = run_contended(cas_increment_until_stopped, cells, 5)
    assert cells[5] == sum(counts)
    assert np.count_nonzero(cells) == 1


def test_mutex_excludes_under_contention():
    counter, occupancy, overlaps = (np.zeros(1, np.int64) for _ in range(3))
    counts = run_contended(locked_increments_until_stopped, new_mutex(), counter, occupancy,
                           overlaps)
    assert overlaps[0] == 0, "a thread entered the critical section while another was in it"
    assert counter[0] == sum(counts)
    assert occupancy[0] == 0


def test_release_store_publishes_to_acquire_load():
    """Ping-pong over one cell: every payload arrives whole and in order, and no spin hangs.

    On x86 (total store order) plain loads and stores would pass this too; the
    orderings themselves are checked in the generated code, below.
    """
    turn = np.zeros(1, np.int64)
    payload = np.zeros(2, np.int64)
    n = 20_000
    seen = np.full(n, -2, np.int64)
    threads = [threading.Thread(target=produce, args=(turn, payload, n), daemon=True),
               threading.Thread(target=consume, args=(turn, payload, seen, n), daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a spin on an acquire load never ended"
    np.testing.assert_array_equal(seen, np.arange(n))
    assert turn[0] == 2 * n


# -- single-threaded semantics -------------------------------------------------------

@njit
def cas_twice(cells):
    missed = cas(cells, 2, 4, 9)  # wrong expected value: no swap
    after_miss = cells[2]
    hit = cas(cells, 2, 5, 9)
    return missed, after_miss, hit


@njit
def add_twice(cells):
    return fetch_add(cells, 1, 7), fetch_add(cells, 1, -10)


def test_cas_swaps_only_on_the_expected_value():
    cells = np.zeros(4, np.int64)
    cells[2] = 5
    assert cas_twice(cells) == (5, 5, 5)
    np.testing.assert_array_equal(cells, [0, 0, 9, 0])


def test_fetch_add_returns_the_old_value():
    cells = np.zeros(3, np.int64)
    assert add_twice(cells) == (0, 7)
    np.testing.assert_array_equal(cells, [0, -3, 0])


def store_then_load(store_order: str, load_order: str) -> Callable:
    """A kernel storing then loading cell 1 with these (literal) orderings."""
    @njit
    def kernel(cells, value):
        store(cells, 1, value, store_order)
        return load(cells, 1, load_order)

    return kernel


@pytest.mark.parametrize("store_order", ["monotonic", "release", "seq_cst"])
@pytest.mark.parametrize("load_order", ["monotonic", "acquire", "seq_cst"])
def test_load_and_store_with_every_valid_ordering(store_order, load_order):
    value = -(2**40) - 3  # needs all 64 bits
    cells = np.zeros(3, np.int64)
    kernel = store_then_load(store_order, load_order)
    assert kernel(cells, value) == value
    np.testing.assert_array_equal(cells, [0, value, 0])
    ir = llvm_ir(kernel)
    assert re.search(rf"store atomic i64 .* {store_order}, align 8", ir), "not an atomic store"
    assert re.search(rf"load atomic i64, ptr .* {load_order}, align 8", ir), "not an atomic load"


def llvm_ir(kernel: Callable) -> str:
    """The optimised LLVM IR of the kernel's one compiled signature."""
    [signature] = kernel.signatures
    return kernel.inspect_llvm(signature)


def test_cas_and_fetch_add_are_single_atomic_instructions():
    """What the contention tests above cannot see on x86: the instructions and their ordering."""
    cas_twice(np.zeros(4, np.int64))  # compiled here too, so that the test runs alone
    add_twice(np.zeros(3, np.int64))
    assert re.search(r"cmpxchg ptr .* seq_cst seq_cst", llvm_ir(cas_twice))
    assert re.search(r"atomicrmw add ptr .* seq_cst", llvm_ir(add_twice))


def test_test_gates_compile_away_in_normal_runs():
    """``gate(None, ...)``, as in every normal run, leaves no code; a gate array calls the parking code."""
    from asgdbench.primitives.gates import GateBoard, gate

    @njit(nogil=True)
    def gated(gates, cells):
        cells[0] += 1
        gate(gates, 1, 0)
        cells[0] += 1

    cells = np.zeros(1, np.int64)
    gated(None, cells)
    gated(GateBoard(1).array, cells)
    assert cells[0] == 4
    without, with_gates = (gated.inspect_llvm(sig) for sig in gated.signatures)
    assert "_park" not in without and "call" not in without.split("define")[1].split("}")[0]
    assert "_park" in with_gates


@pytest.mark.parametrize("ordering", ["acquire", "release", "acq_rel", "seq_cst"])
def test_fence_emits_a_fence_of_its_ordering(ordering):
    """The monitor's seqlock needs its acquire fence; on x86 it is only a compiler barrier,
    so the IR is where its absence shows."""
    @njit
    def fenced(cells):
        first = cells[0]
        fence(ordering)
        return first + cells[1]

    assert fenced(np.arange(2, dtype=np.int64)) == 1
    assert re.search(rf"\bfence (syncscope\(\S+\) )?{ordering}\b", llvm_ir(fenced))


def test_a_parked_thread_leaves_its_gate_when_the_board_aborts():
    """A schedule that goes wrong must not leave a thread parked: ``abort`` frees it for good."""
    from asgdbench.primitives.gates import Actor, GateBoard, gate

    @njit(nogil=True)
    def twice_gated(gates):
        gate(gates, 3, 0)
        gate(gates, 3, 0)
        return 1

    board = GateBoard(1)
    board.arm(0, 3)
    actor = Actor(lambda: twice_gated(board.array))
    board.wait_parked(0, 3)
    time.sleep(0.05)
    assert actor.running and board.passes(0) == 1  # parked, not passing
    board.abort()
    assert actor.result() == 1
    assert board.passes(0) == 2


@pytest.mark.parametrize("store_order, load_order", [
    ("seq_cst", "relaxed"),  # not an LLVM name
    ("seq_cst", "release"),  # no release loads
    ("acquire", "seq_cst"),  # no acquire stores
    ("acq_rel", "seq_cst"),
])
def test_a_bad_ordering_is_a_typing_error(store_order, load_order):
    with pytest.raises((TypeError, TypingError), match="memory ordering must be one of"):
        store_then_load(store_order, load_order)(np.zeros(2, np.int64), 1)


def test_atomics_want_an_int64_cell():
    @njit
    def add_to_float(cells):
        return fetch_add(cells, 0, 1)

    with pytest.raises((TypeError, TypingError), match="int64 array"):
        add_to_float(np.zeros(2, np.float64))


def test_spin_hints_are_callable():
    @njit(nogil=True)
    def back_off(n):
        for _ in range(n):
            cpu_pause()
            os_yield()
        return n

    assert back_off(100) == 100
