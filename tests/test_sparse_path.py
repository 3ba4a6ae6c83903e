"""The sparse path of the strategy contract (issue 22): registration, refusal, seq and HOGWILD!.

Evidence is independent of the harness's counters: the closed form of ``probe-sparse``'s
final vector (fixed support S: ``-lr * c * updates`` on S, 0 off it), a dense reference
workload built from the same data (seq's sparse path must give the same bits), and NaN
sentinels off the support that any read or write there would show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import in_process
from conftest import run_watched
from numba import njit

import asgdbench
from asgdbench.engine.consistency import consistency_stress
from asgdbench.errors import ConfigError, PluginError
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.plugins.strategies import Strategy, get_strategy, register_strategy
from asgdbench.plugins.workloads import Defaults, Workload, get_workload
from asgdbench.primitives import sparse_copy_into, sparse_step_inplace, sparse_step_into
from asgdbench.primitives.protocol import APPLIED, CONTROL_CELLS, MAX_UPDATES, STOP
from asgdbench.workloads import probe
from asgdbench.workloads.sparse_objectives import rows_support

PLUGINS = Path(__file__).parent / "plugins"
PROBE_LR = get_workload("probe-sparse").defaults.lr
UPDATES = 20_000
REPEATS = 5


def probe_sparse_after(updates: int, n_params: int = 8192) -> np.ndarray:
    """probe-sparse's exact vector after ``updates`` updates: S changed, the rest untouched."""
    expected = np.full(n_params, probe.START_VALUE)
    expected[::probe.SPARSE_STRIDE] -= PROBE_LR * probe.GRADIENT_VALUE * updates
    return expected


def sparse_probe_run(strategy: str, threads: int, updates: int):
    return run_watched("probe-sparse", strategy, threads, max_updates=updates, max_time=None,
                       target_loss=None, dtype="float64")


# -- registration ------------------------------------------------------------------------

@njit(nogil=True)
def _read_sparse_swapped(state, tid, control, n_support, support):
    return state[0], 0


@njit(nogil=True)
def _update_sparse_ok(state, tid, token, support, values, n_support, lr, control, rule,
                      rule_state):
    return APPLIED, 0, 1, lr


def test_registration_refuses_a_sparse_kernel_with_misnamed_parameters():
    seq = get_strategy("seq")
    with pytest.raises(PluginError, match=r"'bad-sparse'.*read_sparse has the wrong signature: "
                                          r"expected read_sparse\(state, tid, control, support, "
                                          r"n_support\)"):
        register_strategy(Strategy(name="bad-sparse", summary="x", make_state=seq.make_state,
                                   read=seq.read, update=seq.update,
                                   read_sparse=_read_sparse_swapped,
                                   update_sparse=_update_sparse_ok))


def test_registration_refuses_half_a_sparse_path():
    seq = get_strategy("seq")
    with pytest.raises(PluginError, match="come together \\(a sparse path needs both\\); "
                                          "read_sparse is missing"):
        register_strategy(Strategy(name="half-sparse", summary="x", make_state=seq.make_state,
                                   read=seq.read, update=seq.update,
                                   update_sparse=_update_sparse_ok))


def _probe_sparse_fields(**changes):
    fields = dict(name="sparse-x", gradient=probe.sparse_gradient, train_data=(), n_samples=1,
                  n_params=8, dtype=np.dtype(np.float64), init_params=np.zeros,
                  make_workspace=lambda batch: (), evaluate=dict, training_loss=lambda p: 1.0,
                  defaults=Defaults(0.1, 1, None, 1.0), sparse=True,
                  support=probe.sparse_support, max_support=lambda batch: 1)
    return fields | changes


def test_a_sparse_workload_is_checked_by_kernel_names_when_built():
    Workload(**_probe_sparse_fields())  # the probe's own kernels pass
    with pytest.raises(PluginError, match=r"'sparse-x': gradient has the wrong signature for a "
                                          r"sparse workload: expected gradient\(params, "
                                          r"train_data, rows, workspace, support, n_support, "
                                          r"values\), given gradient\(params, data, rows, work, "
                                          r"grad\)"):
        Workload(**_probe_sparse_fields(gradient=probe.gradient))  # the dense signature
    with pytest.raises(PluginError, match="support has the wrong signature"):
        Workload(**_probe_sparse_fields(support=_read_sparse_swapped))
    with pytest.raises(PluginError, match="needs max_support"):
        Workload(**_probe_sparse_fields(max_support=None))
    with pytest.raises(PluginError, match=r"support must be an @njit"):
        Workload(**_probe_sparse_fields(support=probe.sparse_support.py_func))
    with pytest.raises(PluginError, match="for sparse workloads"):
        Workload(**_probe_sparse_fields(sparse=False))


# -- refusal -----------------------------------------------------------------------------

def test_a_plugin_strategy_without_a_sparse_path_is_refused_in_one_line(capsys, tmp_path):
    ran = in_process(capsys, "run", "--plugin", PLUGINS / "unlocked.py", "--workload",
                     "probe-sparse", "--strategy", "unlocked", "--threads", "2",
                     "--max-updates", "10", "--out", tmp_path / "out")
    assert ran.returncode == 2
    assert ran.stderr.splitlines() == [
        "asgdbench: error: strategy 'unlocked' has no sparse path (read_sparse/update_sparse); "
        "workload 'probe-sparse' is sparse"]
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_hogwild_per_step_copy_has_no_sparse_path():
    with pytest.raises(ConfigError, match="'hogwild-per-step-copy' has no sparse path"):
        asgdbench.run("probe-sparse", "hogwild-per-step-copy", 2, max_updates=10)


# -- seq and HOGWILD! through the runner ---------------------------------------------------

@pytest.mark.parametrize("strategy", ["seq", "hogwild"])
def test_one_thread_sparse_run_ends_at_the_closed_form(strategy):
    result = sparse_probe_run(strategy, 1, 3_000)
    assert result.status == "budget" and result.updates_applied == 3_000
    np.testing.assert_array_equal(result.final_params, probe_sparse_after(3_000))
    assert result.evaluation["torn_reads"] == 0


def test_the_record_says_how_much_an_update_touches_and_writes():
    sparse = sparse_probe_run("seq", 1, 500)
    support = get_workload("probe-sparse").load(dtype="float64").description["support"]
    assert sparse.mean_support == support == 8192 // probe.SPARSE_STRIDE
    changed = np.count_nonzero(sparse.final_params != probe.START_VALUE)  # the memory's word
    assert sparse.param_bytes_written_per_update == changed * 8
    dense = run_watched("probe", "seq", 1, max_updates=50, max_time=None, dtype="float32")
    assert dense.mean_support == dense.final_params.size
    assert dense.param_bytes_written_per_update == dense.final_params.size * 4
    as_dict = sparse.to_dict()
    assert as_dict["mean_support"] == sparse.mean_support
    assert as_dict["param_bytes_written_per_update"] == sparse.param_bytes_written_per_update


def test_hogwild_sparse_path_tears_reads_and_loses_updates_in_a_run():
    """16 threads on the machine's cores, all on the same support: the runner's torn-read
    count and the final vector show HOGWILD!'s races; its ticket still keeps the budget, and
    nothing off the support is ever written."""
    results = [sparse_probe_run("hogwild", 16, UPDATES) for _ in range(REPEATS)]
    for result in results:
        assert result.status == "budget" and result.updates_applied == UPDATES
        assert result.evaluation["written_off_support"] == 0
    assert sum(result.evaluation["torn_reads"] for result in results) > 0
    expected = probe_sparse_after(UPDATES)
    assert any(not np.array_equal(result.final_params, expected) for result in results)


def test_hogwild_sparse_path_is_caught_by_the_stress():
    reports = [consistency_stress("hogwild", 16, UPDATES, sparse=True) for _ in range(REPEATS)]
    assert sum(r.torn_reads + r.changed_while_held for r in reports) > 0
    assert all(r.applied == r.computed == UPDATES for r in reports)


@pytest.mark.parametrize("random_support", [False, True])
def test_seq_sparse_path_passes_the_stress(random_support):
    report = consistency_stress("seq", 1, 5_000, sparse=True, random_support=random_support)
    assert report.clean and report.final_is_exact
    if random_support:  # the supports really varied: some coordinates touched, not all alike
        assert len(set(report.final_params.tolist())) > 2
    else:
        assert np.count_nonzero(report.final_params) == 512 // 8


def test_check_strategy_covers_the_sparse_path():
    checks = asgdbench.check_strategy("seq", threads=1, updates=500, stops=1)
    sparse = {check.name: check.passed for check in checks if check.name.startswith("sparse")}
    assert sparse and all(sparse.values()), checks
    assert "sparse (random support): no lost update" in sparse


# -- a small sparse problem with its dense reference ---------------------------------------

N_FEATURES, N_ROWS, UNTOUCHED = 48, 64, (5, 17, 40)  # features no example has


def _small_problem():
    rng = np.random.default_rng(7)
    indptr, indices, data = [0], [], []
    usable = np.setdiff1d(np.arange(N_FEATURES), UNTOUCHED)
    for _ in range(N_ROWS):
        columns = np.sort(rng.choice(usable, size=rng.integers(1, 6), replace=False))
        indices += columns.tolist()
        data += rng.normal(size=columns.size).tolist()
        indptr.append(len(indices))
    labels = rng.integers(0, 2, N_ROWS).astype(np.float64)
    return (np.array(indptr, np.int64), np.array(indices, np.int64), np.array(data),
            labels)


@njit(nogil=True, cache=True)
def _row_coefficient(params, train_data, row, batch):
    indptr, indices, data, labels = train_data
    margin = 0.0
    for p in range(indptr[row], indptr[row + 1]):
        margin += data[p] * params[indices[p]]
    probability = 1.0 / (1.0 + np.exp(-margin))
    loss = np.log1p(np.exp(-margin)) if labels[row] > 0 else np.log1p(np.exp(margin))
    return (probability - labels[row]) / batch, loss / batch


@njit(nogil=True, cache=True)
def dense_gradient(params, data, rows, work, grad):
    indptr, indices, values, labels = data
    grad[:] = 0.0
    loss = 0.0
    for row in rows:
        coefficient, row_loss = _row_coefficient(params, data, row, rows.shape[0])
        loss += row_loss
        for p in range(indptr[row], indptr[row + 1]):
            grad[indices[p]] += coefficient * values[p]
    return loss


@njit(nogil=True, cache=True)
def sparse_gradient(params, train_data, rows, workspace, support, n_support, values):
    indptr, indices, data, labels = train_data
    marks = workspace[0]
    values[:n_support] = 0.0
    loss = 0.0
    for row in rows:
        coefficient, row_loss = _row_coefficient(params, train_data, row, rows.shape[0])
        loss += row_loss
        for p in range(indptr[row], indptr[row + 1]):
            values[marks[indices[p]]] += coefficient * data[p]
    for k in range(n_support):  # the marks go back to "no slot" for the next minibatch
        marks[support[k]] = -1
    return loss


def _small_workload(sparse: bool, sentinel: float = 0.0) -> Workload:
    train_data = _small_problem()
    init = np.zeros(N_FEATURES)
    init[list(UNTOUCHED)] = sentinel
    extra = dict(sparse=True, support=rows_support,
                 max_support=lambda batch: min(N_FEATURES, 5 * batch)) if sparse else {}
    return Workload(
        name="small-logreg", gradient=sparse_gradient if sparse else dense_gradient,
        train_data=train_data, n_samples=N_ROWS, n_params=N_FEATURES,
        dtype=np.dtype(np.float64), init_params=lambda seed: init.copy(),
        make_workspace=lambda batch: (np.full(N_FEATURES, -1, np.int64),),
        evaluate=lambda params: {}, training_loss=lambda params: 1.0,
        defaults=Defaults(lr=0.25, batch_size=4, target_loss=None, max_time=30.0), **extra)


def test_seq_sparse_path_gives_the_dense_path_bits():
    runs = {sparse: run_watched(_small_workload(sparse), "seq", 1, max_updates=400,
                                max_time=None, seed=3)
            for sparse in (False, True)}
    assert runs[True].updates_applied == runs[False].updates_applied == 400
    assert np.any(runs[True].final_params != 0.0)  # it learned something
    assert runs[True].final_params.tobytes() == runs[False].final_params.tobytes()
    assert runs[True].mean_support < N_FEATURES == runs[False].mean_support


@pytest.mark.parametrize("strategy", ["seq", "hogwild"])
def test_a_sparse_run_never_touches_coordinates_off_every_support(strategy):
    """NaN on the features no example has: a read there would make the loss NaN (the run
    would diverge), a write there would replace the NaN."""
    result = run_watched(_small_workload(True, sentinel=np.nan), strategy, 1, max_updates=400,
                         max_time=None, seed=3)
    assert result.status == "budget"
    assert np.isnan(result.final_params[list(UNTOUCHED)]).all()
    touched = np.delete(result.final_params, list(UNTOUCHED))
    assert np.isfinite(touched).all() and np.isfinite(result.final_loss)


SENTINEL = np.frombuffer(np.array([0x7FF8_DEAD_BEEF_0001], np.uint64).tobytes(), np.float64)[0]


@pytest.mark.parametrize("strategy", ["seq", "hogwild"])
def test_one_sparse_update_reads_and_writes_only_its_support(strategy):
    """Direct kernel calls, a NaN with a payload everywhere off the support: the bits there
    stay the same, and the support gets exactly ``x - step * g``."""
    kernels = get_strategy(strategy)
    support = np.array([3, 9, 4], np.int64)
    params = np.full(16, SENTINEL)
    params[support] = (1.0, 2.0, 3.0)
    state = kernels.make_state(params, 1)
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = 1
    view, token = kernels.read_sparse(state, 0, control, support, 3)
    np.testing.assert_array_equal(view[support], (1.0, 2.0, 3.0))
    constant = parse_step_spec("constant")
    outcome, _, _, step = kernels.update_sparse(state, 0, token, support,
                                                np.array([1.0, -2.0, 4.0]), 3, 0.5, control,
                                                constant.rule.step, constant.make_state(1))
    assert (outcome, step) == (APPLIED, 0.5)
    final = kernels.final_params(state)
    np.testing.assert_array_equal(final[support], (0.5, 3.0, 1.0))
    off = np.setdiff1d(np.arange(16), support)
    assert final[off].tobytes() == params[off].tobytes()


def test_the_shared_sparse_steps_touch_only_the_support():
    support = np.array([1, 6], np.int64)
    values = np.array([2.0, -4.0, 99.0])  # the third is past n_support: never used
    params = np.full(8, SENTINEL)
    params[support] = 1.0
    before = params.copy()
    sparse_step_inplace(params, support, values, 2, 0.25)
    np.testing.assert_array_equal(params[support], (0.5, 2.0))
    off = np.setdiff1d(np.arange(8), support)
    assert params[off].tobytes() == before[off].tobytes()
    local = np.full(8, SENTINEL)
    sparse_copy_into(local, params, support, 2)
    np.testing.assert_array_equal(local[support], (0.5, 2.0))
    assert local[off].tobytes() == before[off].tobytes()
    base = np.arange(8.0)
    out = np.full(8, SENTINEL)
    sparse_step_into(out, base, support, values, 2, 0.5)
    np.testing.assert_array_equal(out, [0.0, 0.0, 2, 3, 4, 5, 8.0, 7])


# -- the instruments can fail: strategies broken on purpose ---------------------------------

@njit(nogil=True)
def _update_sparse_losing_every_eighth(state, tid, token, support, values, n_support, lr,
                                       control, rule, rule_state):
    if state.updates[0] >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    if state.updates[0] % 8 != 7:  # the bug: every eighth update is counted, never written
        sparse_step_inplace(state.params, support, values, n_support, lr)
    state.updates[0] += 1
    return APPLIED, 0, 1, lr


@njit(nogil=True)
def _update_sparse_writing_beside(state, tid, token, support, values, n_support, lr, control,
                                  rule, rule_state):
    if state.updates[0] >= control[MAX_UPDATES]:
        return STOP, 0, 0, lr
    for k in range(n_support):  # the bug: the coordinate next to each one
        j = (support[k] + 1) % state.params.shape[0]
        state.params[j] -= lr * values[k]
    state.updates[0] += 1
    return APPLIED, 0, 1, lr


def _broken(name: str, update_sparse) -> str:
    seq = get_strategy("seq")
    register_strategy(Strategy(name=name, summary="broken on purpose", make_state=seq.make_state,
                               read=seq.read, update=seq.update, read_sparse=seq.read_sparse,
                               update_sparse=update_sparse, consistent=True, max_threads=1))
    return name


@pytest.mark.parametrize("random_support", [False, True])
def test_the_sparse_stress_catches_a_lost_update(random_support):
    name = _broken("sparse-lossy", _update_sparse_losing_every_eighth)
    report = consistency_stress(name, 1, 800, sparse=True, random_support=random_support)
    assert report.applied == 800 and not report.final_is_exact


def test_the_sparse_checks_catch_a_write_off_the_support():
    name = _broken("sparse-beside", _update_sparse_writing_beside)
    assert not consistency_stress(name, 1, 100, sparse=True).final_is_exact
    checks = {check.name: check.passed
              for check in asgdbench.check_strategy(name, threads=1, updates=200, stops=1)}
    assert checks["sparse: nothing written off the support"] is False


def test_a_strategy_that_publishes_whole_vectors_says_so_in_the_record():
    """``written_per_update`` is the strategy's word (Leashed-SGD: a whole vector per publish);
    the record multiplies it by the dtype's size at the run's mean support."""
    seq = get_strategy("seq")
    register_strategy(Strategy(name="sparse-whole-writer", summary="x",
                               make_state=seq.make_state, read=seq.read, update=seq.update,
                               read_sparse=seq.read_sparse, update_sparse=seq.update_sparse,
                               written_per_update=lambda n_params, n_support: n_params,
                               max_threads=1))
    result = run_watched("probe-sparse", "sparse-whole-writer", 1, max_updates=100,
                         max_time=None, dtype="float32")
    assert result.param_bytes_written_per_update == 8192 * 4
    assert result.mean_support == 8192 // probe.SPARSE_STRIDE


def test_hogwild_sparse_update_has_one_atomic_the_ticket():
    """The per-coordinate writes are plain loads and stores, as in Niu et al.: the only
    atomic instruction of the sparse update is the ticket's add (a fresh compile: numba hides
    the IR of cached code). An atomic per coordinate would show here; the stress cannot tell."""
    from conftest import atomic_orderings

    from asgdbench.algorithms import hogwild

    fresh = njit(nogil=True)(hogwild.update_sparse.py_func)
    state = hogwild.make_state(np.zeros(8), 1)
    control = np.zeros(CONTROL_CELLS, np.int64)
    control[MAX_UPDATES] = 1
    constant = parse_step_spec("constant")
    fresh(state, 0, 0, np.array([1, 5], np.int64), np.ones(2), 2, 0.5, control,
          constant.rule.step, constant.make_state(1))
    assert atomic_orderings(fresh, "update_sparse") == {("atomicrmw", "seq_cst"): 1}
