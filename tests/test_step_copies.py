"""The authors' baselines: lock-based AsyncSGD and HOGWILD! with a copy allocated per step.

Consistency of ``lock-per-step-copy`` is proven as the other consistent
strategies' (more threads than cores, every read checked); its memory counter
is held to numba's own allocation statistics (NRT), an independent count of
the vectors the kernels really allocate and free.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

from asgdbench.engine.protocol import CONTROL_CELLS
from asgdbench.engine.steps import STEP_COPIES_LIVE, STEP_COPIES_PEAK
from asgdbench.plugins.strategies import get_strategy
from asgdbench.testing import check_strategy, consistency_stress

UPDATES = 20_000
VARIANTS = ("lock-per-step-copy", "hogwild-per-step-copy")
COUNTER = {"lock-per-step-copy": 1, "hogwild-per-step-copy": 2}  # index in the state tuple
PLAIN = {"lock-per-step-copy": "lock", "hogwild-per-step-copy": "hogwild"}


@pytest.mark.parametrize("threads", [3, 16])
def test_the_lock_variant_reads_whole_versions_and_loses_no_update(threads):
    for _ in range(3):
        report = consistency_stress("lock-per-step-copy", threads, UPDATES)
        assert report.clean, report
        assert report.final_is_exact, "an update was lost or applied twice"
        assert report.applied == UPDATES


@pytest.mark.parametrize("name", VARIANTS)
def test_every_step_allocates_its_copy_and_frees_it(name):
    consistency_stress(name, 1, 10)  # compiled before counting
    consistency_stress(PLAIN[name], 1, 10)
    enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats()
        report = consistency_stress(name, 3, 2_000)
        middle = rtsys.get_allocation_stats()
        consistency_stress(PLAIN[name], 3, 2_000)  # the harness's own allocations, for reference
        after = rtsys.get_allocation_stats()
    finally:
        if not enabled:
            _nrt_python.memsys_disable_stats()
    allocated = middle.alloc - before.alloc
    harness = after.alloc - middle.alloc
    assert allocated - harness >= report.computed  # one vector per step, at least
    assert middle.free - before.free == allocated  # and every one freed
    counter = report.state[COUNTER[name]]
    assert counter[STEP_COPIES_LIVE] == 0  # the counter agrees: none left alive
    assert 1 <= counter[STEP_COPIES_PEAK] <= 3


@pytest.mark.parametrize("name", VARIANTS)
def test_memory_accounting_counts_the_shared_vector_and_the_live_copies(name):
    strategy = get_strategy(name)
    report = consistency_stress(name, 16, UPDATES)
    peak = strategy.peak_param_vectors(report.state, 16)
    assert 2 <= peak <= 1 + 16 <= strategy.max_param_vectors(16)
    assert strategy.live_vectors_now(report.state, 16) == 1  # every copy gone at the end


@pytest.mark.parametrize("name", VARIANTS)
def test_a_read_returns_a_fresh_copy_of_the_shared_vector(name):
    strategy = get_strategy(name)
    state = strategy.make_state(np.arange(8, dtype=np.float32), 2)
    control = np.zeros(CONTROL_CELLS, np.int64)
    first, token = strategy.read(state, 0, control)
    second, _ = strategy.read(state, 1, control)
    assert token == 0
    assert np.array_equal(first, state[0]) and np.array_equal(second, state[0])
    assert not np.shares_memory(first, state[0]) and not np.shares_memory(first, second)
    assert strategy.live_vectors_now(state, 2) == 3 == strategy.peak_param_vectors(state, 2)


@pytest.mark.parametrize("name", VARIANTS)
def test_the_variants_pass_asgdbench_check(name):
    results = check_strategy(name, threads=8, updates=3_000)
    assert all(result.passed is not False for result in results), results
    assert sum(result.passed is True for result in results) >= 5
