"""benchmarks/scripts/sparse_speed.py (issue 22's speed figures) on tiny sizes: each piece runs
and its arithmetic is checked against closed forms; the figures themselves are the script's
to measure, never a test's."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from asgdbench.plugins.workloads import available_workloads

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = str(REPO / "benchmarks" / "scripts")
for folder in (SCRIPTS, str(REPO)):  # the scripts import one another by module name; asv
    if folder not in sys.path:       # imports the suite as the package ``benchmarks``
        sys.path.insert(0, folder)

import sparse_speed  # noqa: E402

needs_zipf = pytest.mark.skipif("logreg-zipf" not in available_workloads(),
                                reason="logreg-zipf (issue 22) is not registered")


@pytest.mark.parametrize("mode", ["zipf", "uniform"])
def test_supports_are_distinct_sorted_coordinates_of_the_vector(mode):
    supports = sparse_speed.draw_supports(1000, 20, 50, mode)
    assert supports.shape == (50, 20) and supports.dtype == np.int64
    assert ((supports >= 0) & (supports < 1000)).all()
    assert (np.diff(supports, axis=1) > 0).all()  # sorted, hence distinct


def test_zipf_supports_concentrate_on_popular_coordinates_as_the_workload_rows_do():
    d, nnz, count = 10_000, 10, 400
    counts = {mode: np.bincount(sparse_speed.draw_supports(d, nnz, count, mode).ravel(),
                                minlength=d) for mode in ("zipf", "uniform")}
    # rank 0 has weight 1 / H_d (about 1 / 9.8): it sits in most zipf supports; uniformly a
    # coordinate sits in nnz / d = 0.1 % of them
    assert counts["zipf"].max() >= 0.5 * count
    assert counts["uniform"].max() <= 0.05 * count


def test_the_memory_floor_driver_subtracts_the_step_on_each_cycled_support():
    supports = sparse_speed.draw_supports(300, 5, 3, "uniform")
    params, values = np.zeros(300, np.float32), np.arange(1, 6, dtype=np.float32)
    sparse_speed.plain_sparse_steps(params, supports, values, np.float32(0.25), 7)
    expected = np.zeros(300, np.float32)
    for k in range(7):
        np.subtract.at(expected, supports[k % 3], 0.25 * values)
    np.testing.assert_allclose(params, expected)


def test_bytes_per_second_is_the_inverse_slope():
    sizes = [4e4, 4e5, 4e6]
    assert sparse_speed.bytes_per_second(sizes, [2e-6 + b / 5e9 for b in sizes]) \
        == pytest.approx(5e9)
    assert sparse_speed.bytes_per_second(sizes, [1e-6] * 3) == math.inf


def test_the_sparse_driver_applies_one_update_per_step_on_the_support_only():
    supports = sparse_speed.draw_supports(500, 8, 4, "uniform")
    updates = sparse_speed.SparseUpdates("hogwild", 500, supports, lr=0.5)
    before = updates.state.params.copy()
    assert updates.steps(8) == 8
    expected = before.copy()
    for k in range(8):  # replayed in NumPy: x[S_k] -= lr * values, supports cycled
        expected[supports[k % 4]] -= np.float32(0.5) * updates.values
    np.testing.assert_allclose(updates.state.params, expected, rtol=1e-6)
    touched = np.unique(supports)
    assert (updates.state.params[np.setdiff1d(np.arange(500), touched)] == 0).all()


def test_the_per_update_scan_runs_on_tiny_sizes():
    scan = sparse_speed.per_update_against_d((200, 2000), nnz=8, repeats=1, mode="zipf",
                                             steps_for=lambda d: 20)
    assert [r["n_params"] for r in scan["rows"]] == [200, 2000]
    assert all(r["hogwild_us"] > 0 and r["leashed_us"] > 0 and r["plain_step_us"] > 0
               for r in scan["rows"])
    assert scan["hogwild_growth"] == pytest.approx(scan["rows"][1]["hogwild_us"]
                                                   / scan["rows"][0]["hogwild_us"])
    assert sparse_speed.table_rows({"per_update": [scan]})[0][3] == "<= 1.5x"


def test_a_strategy_without_a_sparse_path_is_refused_by_name():
    with pytest.raises(ValueError, match="'hogwild-per-step-copy' has no sparse path"):
        sparse_speed.SparseUpdates("hogwild-per-step-copy", 100,
                                   sparse_speed.draw_supports(100, 4, 2, "uniform"))


@needs_zipf
def test_the_epoch_comparison_runs_the_same_updates_on_both_sides():
    epoch = sparse_speed.seq_epoch(rounds=1, n_updates=500)
    assert epoch["updates"] == 500 and epoch["ratio"] > 0
    assert set(epoch["median_s"]) == {"asgdbench seq", "sklearn SGDClassifier",
                                      "sklearn SGDClassifier, shuffle=True",
                                      "kernels alone, rows in order",
                                      "kernels alone, rows at random"}
    assert epoch["ratios"]["sklearn SGDClassifier"] == 1.0


@needs_zipf
def test_the_kernel_epoch_is_seqs_sgd_replayed_in_numpy():
    from asgdbench.plugins.workloads import load_workload

    workload = load_workload("logreg-zipf")
    epoch = sparse_speed.KernelEpoch(workload, 30, "in order")
    params = workload.init_params(0)
    sparse_speed.kernel_epoch()(workload.support, workload.gradient, params,
                                workload.train_data, epoch.order, epoch.work, epoch.support,
                                epoch.values, epoch.lr)
    expected = workload.init_params(0).astype(np.float64)  # the same 30 steps, dense NumPy
    indptr, indices, values, labels, inverse_frequency, reg = workload.train_data
    assert set(np.unique(labels)) == {-1, 1}
    for row in range(30):
        columns = indices[indptr[row]:indptr[row + 1]]
        x = values[indptr[row]:indptr[row + 1]].astype(np.float64)
        margin = labels[row] * (x @ expected[columns])
        slope = -labels[row] / (1 + np.exp(margin))
        expected[columns] -= epoch.lr * (slope * x + reg * inverse_frequency[columns]
                                         * expected[columns])
    np.testing.assert_allclose(params, expected, rtol=1e-3, atol=1e-6)


def test_time_to_target_interleaves_every_cell_and_marks_time_shared_counts():
    figures = sparse_speed.time_to_target("mlp-digits", threads=(1, 2),
                                          strategies=("hogwild", "lock"), rounds=1,
                                          max_time=0.5)
    assert [(c["strategy"], c["threads"]) for c in figures["cells"]] == [
        ("hogwild", 1), ("hogwild", 2), ("lock", 1), ("lock", 2)]
    figures["cores"] = 1
    rows = sparse_speed.table_rows({"time_to_target": figures})
    assert [row[3].endswith("(time-shared)") for row in rows] == [False, True, False, True]


def test_the_asv_sparse_grid_skips_every_cell_without_its_workload_and_runs_with_it():
    from benchmarks import bench_sparse

    bench = bench_sparse.SparseTimeToTarget()
    assert ("logreg-zipf", "seq", 2) not in bench_sparse.SPARSE_CELLS  # seq: one thread only
    if "logreg-zipf" not in available_workloads():
        results = bench.setup_cache()
        assert isinstance(results, str) and "logreg-zipf" in results
        with pytest.raises(NotImplementedError):
            bench.setup(results, "logreg-zipf", "hogwild", 2)
        return
    cell = ("logreg-zipf", "hogwild", 2)
    results = bench_sparse.train_cells([cell], max_time=0.5, target_loss=None)
    bench.setup(results, *cell)
    assert math.isnan(bench.track_time_to_target(results, *cell))  # no target: NaN, not 0
    written = bench.track_param_bytes_written_per_update(results, *cell)
    assert 0 < written < 4 * 47_236  # the support's bytes, not the vector's
