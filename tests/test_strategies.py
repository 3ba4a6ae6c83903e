"""The strategies' guarantees, checked exactly: SGD semantics, no lost updates, no
torn reads, bounded memory and clean stops, under more threads than cores.

Most checks run on the consistency probe (float64, a power-of-two step and a
constant gradient), whose every consistent vector has equal components and whose
arithmetic is exact, so "no update lost" is an equality, not a tolerance.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from asgdbench.result import RunResult
from asgdbench.rng import sample_batch, thread_states
from asgdbench.workloads import load_workload
from conftest import probe_vector_after, run_watched

STRESS_UPDATES = 100_000
CONSISTENT = ("lock", "leashed:tp=inf")


def assert_probe_exact(result: RunResult, updates: int) -> None:
    """The final vector is the probe's consistent vector after exactly ``updates`` updates."""
    np.testing.assert_array_equal(result.final_params,
                                  probe_vector_after(updates, result.final_params.size))
    assert result.evaluation["components_disagree"] is False


def assert_counts_add_up(result: RunResult) -> None:
    assert sum(result.per_thread_updates) == result.updates_applied
    assert sum(result.per_thread_gradients) == result.gradients_computed
    assert len(result.per_thread_updates) == result.config.threads
    assert result.staleness["count"] == result.updates_applied


# -- SGD semantics -----------------------------------------------------------------

def test_seq_reproduces_numpy_sgd(numpy_mlp):
    """seq's trajectory equals plain NumPy SGD fed the same seeded minibatches."""
    seed, updates, window = 3, 400, 50
    result = run_watched("mlp-digits", "seq", 1, seed=seed, max_updates=updates,
                         target_loss=None, max_time=None, dtype="float64", window=window)
    workload = load_workload("mlp-digits", dtype="float64")
    X, y, layers = workload.train_data
    reference = numpy_mlp(layers)
    params = workload.init_params(seed)
    rng = thread_states(seed, 1)[0].copy()
    rows = np.empty(result.config.batch_size, np.int64)
    losses = []
    for _ in range(updates):
        sample_batch(rng, workload.n_samples, rows)
        loss, grad = reference.loss_and_gradient(params, X[rows], y[rows])
        params = params - result.config.lr * grad
        losses.append(loss)

    assert result.status == "budget"
    assert result.updates_applied == result.gradients_computed == updates
    np.testing.assert_allclose(result.final_params, params, rtol=1e-9, atol=1e-12)
    assert result.final_loss == pytest.approx(np.mean(losses[-window:]), rel=1e-9)
    assert result.test_loss == pytest.approx(workload.evaluate(params)["test_loss"], rel=1e-9)


# -- no lost updates ---------------------------------------------------------------

@pytest.mark.parametrize("algorithm", CONSISTENT)
def test_no_update_is_lost(probe_run, algorithm):
    result = probe_run(algorithm, 16, STRESS_UPDATES)
    assert result.status == "budget"
    assert result.updates_applied == result.gradients_computed == STRESS_UPDATES
    assert result.gradients_dropped == 0
    assert_counts_add_up(result)
    assert_probe_exact(result, STRESS_UPDATES)


@pytest.mark.parametrize("tp", [0, 1, 4])
def test_bounded_persistence_drops_but_never_loses(probe_run, tp):
    result = probe_run(f"leashed:tp={tp}", 16, STRESS_UPDATES)
    assert result.status == "budget"
    assert result.updates_applied == STRESS_UPDATES
    assert result.updates_applied + result.gradients_dropped == result.gradients_computed
    assert_counts_add_up(result)
    assert_probe_exact(result, result.updates_applied)
    cas = result.cas
    assert cas["attempts"]["count"] == result.gradients_computed
    assert cas["attempts"]["max"] <= tp + 1  # the persistence bound
    assert cas["failures"] == cas["total_attempts"] - result.updates_applied
    assert cas["failures"] >= (tp + 1) * result.gradients_dropped  # a drop is tp + 1 failures


# -- no torn reads -----------------------------------------------------------------

@pytest.mark.parametrize("threads", [8, 16])
@pytest.mark.parametrize("algorithm", CONSISTENT)
def test_consistent_strategies_never_tear_a_read(probe_run, algorithm, threads):
    assert probe_run(algorithm, threads, STRESS_UPDATES).evaluation["torn_reads"] == 0


@pytest.mark.parametrize("threads", [8, 16])
def test_hogwild_tears_reads(probe_run, threads):
    """The same check catches HOGWILD!'s inconsistent reads: the probe can fail."""
    result = probe_run("hogwild", threads, STRESS_UPDATES)
    assert result.evaluation["torn_reads"] > 0
    assert result.status == "budget"
    assert result.updates_applied == result.gradients_computed == STRESS_UPDATES
    assert_counts_add_up(result)


# -- bounded memory ------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, 8, 16])
def test_leashed_memory_stays_bounded(probe_run, threads):
    result = probe_run("leashed:tp=inf", threads, STRESS_UPDATES if threads >= 8 else 20_000)
    assert 2 <= result.peak_param_vectors <= 2 * threads + 1
    assert result.peak_param_bytes == result.peak_param_vectors * result.final_params.nbytes
    # every vector but the latest is back on the free list, and the latest is the last version
    assert result.strategy_state["free_slots"] == result.peak_param_vectors - 1
    assert result.strategy_state["latest_version"] == result.updates_applied


# -- SYNC --------------------------------------------------------------------------

def test_sync_stops_mid_round_without_deadlock():
    """Many short timed runs: each stops wherever its threads are, and returns."""
    durations = itertools.cycle([0.05, 0.1, 0.2, 0.07])
    for _ in range(20):
        result = run_watched("probe", "sync", 16, max_time=next(durations), dtype="float64",
                             watchdog_s=30.0)
        assert result.status == "timeout"
        assert_probe_exact(result, result.updates_applied)  # no round applied by halves


def test_sync_applies_exactly_its_budget(probe_run):
    threads, rounds = 16, 500
    result = probe_run("sync", threads, rounds)
    assert result.status == "budget"
    assert result.updates_applied == rounds
    assert result.gradients_computed == threads * rounds  # every gradient merged into a round
    assert_probe_exact(result, rounds)  # m equal gradients averaged: one step per round
