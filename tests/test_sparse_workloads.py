"""The sparse workloads of asgdbench.workloads.sparse_catalog: registered in their own group,
loaded as sparse Workloads whose kernels agree with dense NumPy references on the loaded data,
evaluated against closed forms (zero weights, the planted factors), trained to their default
target by a plain SGD loop; the svmlight family; missing data as one line naming the download;
the rcv1 and movielens-100k downloads through `asgdbench download` (127.0.0.1 only)."""

from __future__ import annotations

import functools
import hashlib
import pathlib

import numpy as np
import pytest
from numba import njit
from test_datasets import no_proxies, serve  # noqa: F401  (a fixture, and the local server)
from test_sparse_data import movielens_zip, ratings_file

from asgdbench.errors import ConfigError, DataError, PluginError
from asgdbench.plugins.workloads import (
    WORKLOAD_FAMILIES,
    WorkloadFamily,
    get_workload,
    load_workload,
    register_workload_family,
    workloads_by_group,
)
from asgdbench.primitives.rng import sample_batch, thread_states
from asgdbench.workloads import download, sparse_catalog, sparse_files
from asgdbench.workloads.synthetic_sparse import planted_factors, zipf_classification

SPARSE = ("logreg-rcv1", "logreg-zipf", "mf-movielens", "mf-synthetic", "svm-zipf")
SHARED_DATA = pathlib.Path("/work/shared/data")


def one_line(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def kernel_call(workload, params, rows):
    """``(support, values, loss)`` of the workload's two kernels, buffers of max_support."""
    rows = np.asarray(rows, dtype=np.int64)
    room = workload.max_support(rows.shape[0])
    support = np.full(room, -1, np.int64)
    values = np.full(room, np.nan, workload.dtype)
    work = workload.make_workspace(rows.shape[0])
    n = workload.support(workload.train_data, rows, work, support)
    loss = workload.gradient(params, workload.train_data, rows, work, support, n, values)
    assert np.all(work[0] == -1)  # the marks are ready for the next minibatch
    return support[:n], values[:n], loss


@njit(nogil=True)
def plain_sgd(support_kernel, gradient_kernel, params, data, n_samples, work, support, values,
              rows, state, lr, minibatches, losses):
    for step in range(minibatches):
        sample_batch(state, n_samples, rows)
        n = support_kernel(data, rows, work, support)
        losses[step] = gradient_kernel(params, data, rows, work, support, n, values)
        for k in range(n):
            params[support[k]] -= lr * values[k]


def updates_to_target(workload, max_updates: int, seed: int = 0) -> int | None:
    """Updates a one-thread SGD loop at the defaults takes until the mean loss of the last
    window of minibatches (the runner's smoothing) is at the target; None if it never is."""
    defaults = workload.defaults
    batch = defaults.batch_size
    window = max(16, -(-2048 // batch))
    params = workload.init_params(seed)
    room = workload.max_support(batch)
    support, values = np.empty(room, np.int64), np.empty(room, workload.dtype)
    rows, work, state = np.empty(batch, np.int64), workload.make_workspace(batch), \
        thread_states(seed, 1)[0]
    losses = np.empty(window)
    for done in range(window, max_updates + 1, window):
        plain_sgd(workload.support, workload.gradient, params, workload.train_data,
                  workload.n_samples, work, support, values, rows, state, defaults.lr, window,
                  losses)
        if losses.mean() <= defaults.target_loss:
            return done
    return None


# --- registration ------------------------------------------------------------------------


def test_sparse_workloads_are_listed_in_their_own_group() -> None:
    groups = workloads_by_group()
    names = [spec.name for spec in groups["sparse"]]
    assert set(SPARSE) <= set(names)
    assert {"svmlight:<path>", "svmlight-hinge:<path>"} <= set(names)
    assert all(spec.group == "sparse" for spec in groups["sparse"])
    for group, specs in groups.items():
        if group != "sparse":
            assert not set(SPARSE) & {spec.name for spec in specs}


def test_defaults_name_a_target_and_a_time_limit() -> None:
    for name in SPARSE:
        defaults = get_workload(name).defaults
        assert defaults.target_loss is not None and defaults.max_time > 0
        assert defaults.batch_size >= 1 and defaults.lr > 0


@pytest.mark.parametrize("name, problem", [
    ("nope:/tmp/x", "unknown workload family 'nope'"),
    ("svmlight:", "needs its path after the colon"),
])
def test_family_names_that_cannot_be_made(name: str, problem: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        get_workload(name)
    one_line(excinfo, problem)


def test_a_family_prefix_is_taken_once() -> None:
    family = WORKLOAD_FAMILIES["svmlight"]
    assert register_workload_family(family) is family  # the same family again: fine
    with pytest.raises(PluginError):
        register_workload_family(WorkloadFamily("svmlight", "file", family.make))
    with pytest.raises(PluginError):
        register_workload_family(WorkloadFamily("bad prefix", "file", family.make))
    assert WORKLOAD_FAMILIES["svmlight"] is family


def test_builder_options_are_checked_at_registration() -> None:
    assert sparse_catalog.linear_problem(data="zipf", loss="logistic") is None
    assert "unknown loss" in sparse_catalog.linear_problem(data="zipf", loss="squared")
    assert "path" in sparse_catalog.linear_problem(data="svmlight", loss="hinge")
    assert "rank" in sparse_catalog.factorization_problem(data="planted", rank=0)
    assert "unknown rating" in sparse_catalog.factorization_problem(data="netflix")


# --- linear models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def zipf():
    return zipf_classification(seed=0)


@pytest.mark.parametrize("name, loss", [("logreg-zipf", "logistic"), ("svm-zipf", "hinge")])
def test_zipf_workload_against_a_dense_reference(zipf, name: str, loss: str) -> None:
    """The loaded kernels on the loaded rows: the gradient and loss of the objective written
    densely with NumPy over the same rows, at random weights (float64)."""
    workload = load_workload(name, dtype="float64")
    assert workload.sparse and workload.n_params == zipf.n_features == 47_236
    assert workload.n_samples == zipf.train.n_rows
    reg = workload.description["reg"]
    rng = np.random.default_rng(1)
    params = rng.normal(0.0, 0.5, workload.n_params)
    longest = int(np.argmax(np.diff(zipf.train.indptr)))
    batch = [longest] * workload.defaults.batch_size  # the most room a support can need
    support, values, _ = kernel_call(workload, params, batch)
    batch = [3, 17, 17, 40_000, longest]
    support, values, minibatch_loss = kernel_call(workload, params, batch)
    X = zipf.train.to_scipy()[batch].toarray()
    y = zipf.y_train[batch]
    margins = X @ params
    if loss == "logistic":
        losses, slopes = np.logaddexp(0.0, -y * margins), -y / (1.0 + np.exp(y * margins))
    else:
        losses = np.maximum(0.0, 1.0 - y * margins)
        slopes = np.where(y * margins < 1.0, -y, 0.0)
    touched = (X != 0).astype(float)
    weight = reg * zipf.inverse_frequency
    want_loss = np.mean(losses + 0.5 * touched @ (weight * params**2))
    want = (X.T @ slopes + weight * params * touched.sum(axis=0)) / len(batch)
    assert sorted(support.tolist()) == np.flatnonzero(touched.any(axis=0)).tolist()
    dense = np.zeros(workload.n_params)
    dense[support] = values
    np.testing.assert_allclose(dense, want, rtol=1e-10, atol=1e-14)
    assert minibatch_loss == pytest.approx(want_loss, rel=1e-12)


def test_zipf_evaluation_at_zero_weights() -> None:
    """At w = 0 every margin is 0: logistic loss log 2, hinge loss 1, no example right."""
    for name, test_loss in (("logreg-zipf", np.log(2.0)), ("svm-zipf", 1.0)):
        workload = load_workload(name)
        params = workload.init_params(0)
        assert params.dtype == np.float32 and not np.any(params)
        assert workload.evaluate(params) == {"test_loss": pytest.approx(test_loss),
                                             "test_accuracy": 0.0}
        assert workload.training_loss(params) == pytest.approx(test_loss)


def test_logreg_zipf_defaults_reach_the_target() -> None:
    """The tuned defaults: one thread of plain SGD reaches the target loss (the tuning run
    took about 70,000 updates; the budget leaves room for a different sampling stream)."""
    workload = load_workload("logreg-zipf")
    assert updates_to_target(workload, 400_000) is not None


# --- svmlight ---------------------------------------------------------------------------


def write_svmlight(path: pathlib.Path, labels=(0, 1)) -> None:
    rng = np.random.default_rng(2)
    lines = []
    for row in range(50):
        label = labels[row % 2]
        columns = np.sort(rng.choice(20, 4, replace=False)) + 1
        lines.append(f"{label} " + " ".join(f"{c}:{rng.uniform(0.1, 1):.3f}" for c in columns))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("prefix, loss", [("svmlight", "logistic"), ("svmlight-hinge", "hinge")])
def test_svmlight_family_loads_the_users_file(tmp_path: pathlib.Path, prefix: str,
                                              loss: str) -> None:
    path = tmp_path / "my data:v1.svm"  # a colon in the path is the path's
    write_svmlight(path)
    name = f"{prefix}:{path}"
    spec = get_workload(name)
    assert spec.name == name and spec.group == "sparse"
    workload = load_workload(name, dtype="float64")
    assert workload.sparse and workload.description["loss"] == loss
    assert workload.n_params == 20 and workload.n_samples == 40  # 80/20 split of 50 rows
    support, values, _ = kernel_call(workload, workload.init_params(0), [0, 1, 2])
    assert 4 <= support.shape[0] <= 12 and np.all(np.isfinite(values))
    assert workload.evaluate(workload.init_params(0))["test_loss"] == pytest.approx(
        np.log(2.0) if loss == "logistic" else 1.0)


def test_a_run_on_the_users_file_records_the_svmlight_family(tmp_path: pathlib.Path) -> None:
    from asgdbench import run

    path = tmp_path / "mine.svm"
    write_svmlight(path)
    result = run(f"svmlight:{path}", "seq", 1, max_updates=20, max_time=None)
    assert result.workload_source == {"kind": "built-in",
                                      "module": "asgdbench.workloads.sparse_catalog",
                                      "family": "svmlight"}
    assert result.config.workload == f"svmlight:{path}"  # the file, named in the record


def test_svmlight_missing_file_is_one_line(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_workload(f"svmlight:{tmp_path / 'absent.svm'}")
    one_line(excinfo, "absent.svm", "missing")


# --- matrix factorization ----------------------------------------------------------------


def test_mf_synthetic_at_the_planted_factors() -> None:
    """At the planted factors the test error is the planted noise (standard deviation 0.5):
    an independent check of the data, the parameter layout and evaluate."""
    workload = load_workload("mf-synthetic", dtype="float64")
    rank = workload.description["rank"]
    left, right = planted_factors(0, 943, 1682, rank)
    assert workload.n_params == (943 + 1682) * rank
    evaluation = workload.evaluate(np.concatenate([left, right]).ravel())
    assert evaluation["test_loss"] == pytest.approx(0.25, rel=0.05)
    assert evaluation["test_rmse"] == pytest.approx(np.sqrt(evaluation["test_loss"]))


def test_mf_init_is_small_random_and_seeded() -> None:
    workload = load_workload("mf-synthetic")
    first, again, other = (workload.init_params(seed) for seed in (0, 0, 1))
    assert first.dtype == np.float32 and first.shape == (workload.n_params,)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert 0.05 < float(np.std(first)) < 0.2


def test_mf_synthetic_kernels_and_defaults() -> None:
    """The support of a minibatch is its users' and items' factor rows, within max_support;
    plain SGD at the defaults reaches the target (tuning: about 640,000 updates)."""
    workload = load_workload("mf-synthetic")
    users, items, *_ , n_users, rank, _ = workload.train_data
    params = workload.init_params(0)
    batch = [0, 5, 5, 99]
    support, values, _ = kernel_call(workload, params, batch)
    want = {users[k] * rank + c for k in batch for c in range(rank)} | {
        (n_users + items[k]) * rank + c for k in batch for c in range(rank)}
    assert sorted(support.tolist()) == sorted(want)
    assert updates_to_target(workload, 3_000_000) is not None


@pytest.mark.skipif(not (SHARED_DATA / "movielens-100k" / "u.data").is_file(),
                    reason="no movielens-100k in /work/shared/data")
def test_mf_movielens_loads_the_real_ratings() -> None:
    workload = load_workload("mf-movielens", data_dir=str(SHARED_DATA))
    assert workload.description["n_users"] == 943 and workload.description["n_items"] == 1682
    assert workload.n_samples + workload.description["n_test"] == 100_000
    evaluation = workload.evaluate(workload.init_params(0))
    # near-zero factors predict ~0: the test error is about the mean squared rating (~13.7)
    assert 12.0 < evaluation["test_loss"] < 15.5


# --- missing data, downloads --------------------------------------------------------------


@pytest.mark.parametrize("name, command", [("mf-movielens", "asgdbench download movielens-100k"),
                                           ("logreg-rcv1", "asgdbench download rcv1")])
def test_missing_data_is_one_line_naming_the_download(tmp_path: pathlib.Path, name: str,
                                                      command: str, capsys) -> None:
    with pytest.raises(DataError) as excinfo:
        load_workload(name, data_dir=str(tmp_path))
    one_line(excinfo, command)
    from asgdbench.study.cli import main

    code = main(["run", "--workload", name, "--strategy", "lock", "--threads", "2",
                 "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and command in err


def test_sparse_data_sets_are_downloads() -> None:
    assert {"rcv1", "movielens-100k"} <= set(download.DOWNLOADS)


def test_download_command_fetches_movielens(no_proxies: None, tmp_path: pathlib.Path,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`asgdbench download movielens-100k` from a local server: the folder on stdout, then
    the workload loads from it; the real u.data's checksum is the one the loader checks."""
    from asgdbench.study.cli import main

    raw = ratings_file(n_users=6, n_items=8)
    served = tmp_path / "www"
    served.mkdir()
    movielens_zip(served / "ml-100k.zip", raw)
    sha256 = hashlib.sha256(raw).hexdigest()
    with serve(served) as base:
        monkeypatch.setitem(download.DOWNLOADS, "movielens-100k", functools.partial(
            sparse_files.download_movielens, url=f"{base}/ml-100k.zip", sha256=sha256, timeout=5,
            retries=0))
        code = main(["download", "movielens-100k", "--data-dir", str(tmp_path / "data")])
    assert code == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "data" / "movielens-100k"))
    assert (tmp_path / "data" / "movielens-100k" / "u.data").read_bytes() == raw


@pytest.mark.parametrize("name", ["logreg-zipf", "mf-synthetic"])
def test_asgdbench_check_holds_the_sparse_workloads(name: str) -> None:
    """`asgdbench check workload:NAME`: data, shapes and central differences through the two
    kernels (zero off the support), and a real SEQ run reaching the default target."""
    from asgdbench.engine.workload_checks import check_workload

    checks = check_workload(name)
    assert len(checks) == 4 and checks[-1].name.startswith("defaults converge")
    assert all(check.passed for check in checks), checks
