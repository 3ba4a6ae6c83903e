"""The sparse kernels of asgdbench.workloads.sparse_objectives against central finite
differences and against dense NumPy references computed from the same parameters; the split
kernels (support, then gradient) against the earlier one-pass ones; and the O(nnz) claim,
checked by which coordinates a kernel reads and writes, not by timing."""

from __future__ import annotations

import numpy as np
import pytest
from sparse_one_pass import log1p_exp, one_pass_linear_gradient, one_pass_mf_gradient, sigmoid

from asgdbench.workloads.sparse_data import CsrRows, inverse_counts
from asgdbench.workloads.sparse_objectives import (
    HINGE,
    LOGISTIC,
    hinge_gradient,
    linear_accuracy,
    linear_gradient,
    linear_loss,
    linear_objective,
    linear_support,
    logistic_gradient,
    max_row_nnz,
    mf_gradient,
    mf_objective,
    mf_squared_error,
    mf_support,
    new_marks,
    ratings_gradient,
    ratings_support,
    rows_support,
)

KERNELS = {LOGISTIC: logistic_gradient, HINGE: hinge_gradient}


def random_rows(rng: np.random.Generator, n_rows: int, n_features: int, nnz: int) -> CsrRows:
    """Rows with ``1..nnz`` distinct sorted columns each and values in ±[0.2, 1]."""
    lengths = rng.integers(1, nnz + 1, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(n_features, n, replace=False))
                              for n in lengths]).astype(np.int32)
    values = rng.uniform(0.2, 1.0, indptr[-1]) * rng.choice([-1.0, 1.0], indptr[-1])
    return CsrRows(indptr, indices, values, n_features)


def linear_problem(seed: int = 0, n_rows: int = 40, n_features: int = 30, nnz: int = 6):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, n_rows, n_features, nnz)
    labels = rng.choice([-1.0, 1.0], n_rows)
    counts = np.bincount(rows.indices, minlength=n_features)
    params = rng.normal(0.0, 0.5, n_features)
    return rows, labels, inverse_counts(counts, n_rows), params


def call(kind: int, params, rows: CsrRows, labels, inverse_frequency, reg, batch,
         marks=None):
    """``(support, values, loss)`` of the kernel for ``batch``, buffers sized by nnz, not d."""
    room = int(sum(rows.indptr[r + 1] - rows.indptr[r] for r in batch))
    support = np.full(room, -1, dtype=np.int64)
    grad_values = np.full(room, np.nan)
    marks = new_marks(params.shape[0]) if marks is None else marks
    rows_batch = np.asarray(batch, dtype=np.int64)
    n = linear_support(rows.indptr, rows.indices, rows_batch, marks, support)
    loss = linear_gradient(kind, params, rows.indptr, rows.indices, rows.values, labels,
                           inverse_frequency, reg, rows_batch, marks, support, n, grad_values)
    return support[:n], grad_values[:n], loss


def dense_linear(kind: int, params, rows: CsrRows, labels, inverse_frequency, reg, batch):
    """The minibatch objective and its full gradient, written densely with NumPy."""
    X = rows.to_scipy().toarray()[batch]
    y = labels[batch]
    margins = X @ params
    if kind == LOGISTIC:
        losses = np.logaddexp(0.0, -y * margins)
        slopes = -y / (1.0 + np.exp(y * margins))
    else:
        losses = np.maximum(0.0, 1.0 - y * margins)
        slopes = np.where(y * margins < 1.0, -y, 0.0)
    touched = (X != 0).astype(float)  # row b's support
    penalties = 0.5 * reg * touched @ (inverse_frequency * params**2)
    gradient = (X.T @ slopes + reg * inverse_frequency * params * touched.sum(axis=0)) / len(batch)
    return float(np.mean(losses + penalties)), gradient


def densified(support, values, n_params: int) -> np.ndarray:
    dense = np.zeros(n_params)
    dense[support] = values
    return dense


@pytest.mark.parametrize("kind", [LOGISTIC, HINGE], ids=["logistic", "hinge"])
@pytest.mark.parametrize("batch", [[3], [0, 5, 7, 7, 12], list(range(40))],
                         ids=["one", "repeat", "all"])
def test_linear_gradient_matches_the_dense_reference(kind: int, batch: list[int]) -> None:
    rows, labels, inverse_frequency, params = linear_problem()
    support, values, loss = call(kind, params, rows, labels, inverse_frequency, 0.1, batch)
    want_loss, want_gradient = dense_linear(kind, params, rows, labels, inverse_frequency, 0.1,
                                            batch)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    expected_support = np.unique(rows.indices[np.concatenate(
        [np.arange(rows.indptr[r], rows.indptr[r + 1]) for r in batch])])
    assert sorted(support.tolist()) == expected_support.tolist()  # the union, each once
    np.testing.assert_allclose(densified(support, values, params.shape[0]), want_gradient,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", [LOGISTIC, HINGE], ids=["logistic", "hinge"])
def test_linear_gradient_matches_finite_differences(kind: int) -> None:
    rows, labels, inverse_frequency, params = linear_problem(seed=1)
    batch = [1, 4, 9, 9, 20]
    support, values, _ = call(kind, params, rows, labels, inverse_frequency, 0.3, batch)
    gradient = densified(support, values, params.shape[0])
    step = 1e-6
    if kind == HINGE:  # the kink must be farther than the step from every margin
        margins = labels[batch] * (rows.to_scipy().toarray()[batch] @ params)
        assert np.min(np.abs(margins - 1.0)) > 1e-3
    for j in range(params.shape[0]):  # every coordinate: zero off the support
        shifted = [params.copy(), params.copy()]
        shifted[0][j] += step
        shifted[1][j] -= step
        up, down = (call(kind, p, rows, labels, inverse_frequency, 0.3, batch)[2]
                    for p in shifted)
        np.testing.assert_allclose(gradient[j], (up - down) / (2 * step), rtol=1e-6, atol=1e-8,
                                   err_msg=f"coordinate {j}")
    assert np.count_nonzero(gradient) > 0


def test_hinge_gradient_is_the_regularizer_alone_past_the_margin() -> None:
    """A row classified with margin > 1 adds no loss and only its penalty's gradient."""
    rows = CsrRows(np.array([0, 2]), np.array([1, 3], dtype=np.int32), np.array([1.0, 2.0]), 5)
    params = np.array([9.0, 1.0, 9.0, 1.0, 9.0])  # margin 3
    inverse_frequency = np.array([0.0, 2.0, 0.0, 4.0, 0.0])
    support, values, loss = call(HINGE, params, rows, np.array([1.0]), inverse_frequency, 0.5, [0])
    assert loss == pytest.approx(0.5 * 0.5 * (2.0 * 1.0 + 4.0 * 1.0))
    assert dict(zip(support.tolist(), values.tolist())) == {1: 0.5 * 2.0, 3: 0.5 * 4.0}


def test_logistic_loss_is_stable_at_huge_margins() -> None:
    rows = CsrRows(np.array([0, 1, 2]), np.array([0, 0], dtype=np.int32),
                   np.array([1.0, 1.0]), 1)
    labels = np.array([1.0, -1.0])
    for weight in (800.0, -800.0):
        support, values, loss = call(LOGISTIC, np.array([weight]), rows, labels,
                                     np.zeros(1), 0.0, [0, 1])
        assert np.isfinite(loss) and np.all(np.isfinite(values))
        assert loss == pytest.approx(400.0, rel=1e-12)  # one row right, one wrong by 800
        assert values[0] == pytest.approx(0.5 * (-1.0 if weight < 0 else 1.0))


def test_regularizer_averages_to_the_plain_penalty() -> None:
    """Over all training rows once each, the per-example penalties weighted by n / d_j add up
    to (reg / 2) ||w||^2 on the seen features: the sparse regularizer is the usual one."""
    rows, labels, inverse_frequency, params = linear_problem(seed=2)
    seen = inverse_frequency > 0
    batch = list(range(rows.n_rows))
    _, _, with_penalty = call(LOGISTIC, params, rows, labels, inverse_frequency, 0.2, batch)
    _, _, without = call(LOGISTIC, params, rows, labels, inverse_frequency, 0.0, batch)
    assert with_penalty - without == pytest.approx(0.1 * np.sum(params[seen] ** 2), rel=1e-12)
    assert without == pytest.approx(linear_loss(LOGISTIC, params, rows.indptr, rows.indices,
                                                rows.values, labels), rel=1e-12)


@pytest.mark.parametrize("kind", [LOGISTIC, HINGE], ids=["logistic", "hinge"])
def test_linear_objective_is_the_mean_over_all_rows(kind: int) -> None:
    rows, labels, inverse_frequency, params = linear_problem(seed=6)
    everything = list(range(rows.n_rows))
    want, _ = dense_linear(kind, params, rows, labels, inverse_frequency, 0.3, everything)
    assert linear_objective(kind, params, rows.indptr, rows.indices, rows.values, labels,
                            inverse_frequency, 0.3) == pytest.approx(want, rel=1e-12)


def test_linear_loss_and_accuracy_against_numpy() -> None:
    rows, labels, _, params = linear_problem(seed=3)
    margins = rows.to_scipy() @ params
    for kind, losses in ((LOGISTIC, np.logaddexp(0.0, -labels * margins)),
                         (HINGE, np.maximum(0.0, 1.0 - labels * margins))):
        assert linear_loss(kind, params, rows.indptr, rows.indices, rows.values,
                           labels) == pytest.approx(losses.mean(), rel=1e-12)
    assert linear_accuracy(params, rows.indptr, rows.indices, rows.values,
                           labels) == pytest.approx(np.mean(labels * margins > 0))


@pytest.mark.parametrize("kind", [LOGISTIC, HINGE], ids=["logistic", "hinge"])
def test_linear_cost_does_not_grow_with_d(kind: int) -> None:
    """The same rows placed among 10^2 and 10^6 features: the kernel reads the parameters
    (NaN everywhere else) and touches ``marks`` (a sentinel everywhere else) only on the
    minibatch's support, writes only nnz-sized buffers, and gives the same answer."""
    rng = np.random.default_rng(4)
    small = random_rows(rng, 30, 100, 8)
    labels = rng.choice([-1.0, 1.0], 30)
    batch = [2, 11, 11, 29]
    answers = []
    for n_features in (100, 1_000_000):
        place = np.sort(rng.choice(n_features, 100, replace=False))  # feature j -> place[j]
        rows = CsrRows(small.indptr, place[small.indices].astype(np.int32), small.values,
                       n_features)
        touched = np.unique(rows.indices[np.concatenate(
            [np.arange(rows.indptr[r], rows.indptr[r + 1]) for r in batch])])
        params = np.full(n_features, np.nan)
        params[touched] = np.linspace(-1.0, 1.0, touched.shape[0])
        inverse_frequency = np.full(n_features, np.nan)
        inverse_frequency[touched] = np.linspace(1.0, 3.0, touched.shape[0])
        marks = np.full(n_features, -7, dtype=np.int64)
        support, values, loss = call(kind, params, rows, labels, inverse_frequency, 0.1, batch,
                                     marks=marks)
        assert np.isfinite(loss) and np.all(np.isfinite(values))  # nothing else was read
        assert np.array_equal(np.flatnonzero(marks != -7), touched)  # nor marked
        assert np.all(marks[touched] == -1)  # and the marks were left ready for the next call
        assert sorted(support.tolist()) == touched.tolist()
        order = np.argsort(support)
        answers.append((np.searchsorted(place, support[order]), values[order], loss))
    (slots_a, values_a, loss_a), (slots_b, values_b, loss_b) = answers
    assert np.array_equal(slots_a, slots_b)
    np.testing.assert_array_equal(values_a, values_b)
    assert loss_a == loss_b


# --- matrix factorization ----------------------------------------------------------------


def mf_problem(seed: int = 0, n_users: int = 7, n_items: int = 9, n_ratings: int = 30,
               rank: int = 3):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, n_ratings, replace=False)
    users, items = (a.astype(np.int32) for a in np.divmod(cells, n_items))
    ratings = rng.integers(1, 6, n_ratings).astype(np.float64)
    user_weight = inverse_counts(np.bincount(users, minlength=n_users), n_ratings)
    item_weight = inverse_counts(np.bincount(items, minlength=n_items), n_ratings)
    params = rng.normal(0.0, 0.7, (n_users + n_items) * rank)
    return users, items, ratings, user_weight, item_weight, params


def call_mf(problem, batch, rank: int = 3, n_users: int = 7, reg: float = 0.05, marks=None):
    users, items, ratings, user_weight, item_weight, params = problem
    room = 2 * rank * len(batch)
    support = np.full(room, -1, dtype=np.int64)
    grad_values = np.full(room, np.nan)
    marks = new_marks(params.shape[0]) if marks is None else marks
    rows = np.asarray(batch, dtype=np.int64)
    n = mf_support(users, items, n_users, rank, rows, marks, support)
    loss = mf_gradient(params, users, items, ratings, user_weight, item_weight, n_users, rank,
                       reg, rows, marks, support, n, grad_values)
    return support[:n], grad_values[:n], loss


def dense_mf(problem, batch, rank: int = 3, n_users: int = 7, reg: float = 0.05):
    users, items, ratings, user_weight, item_weight, params = problem
    factors = params.reshape(-1, rank)
    L, R = factors[:n_users], factors[n_users:]
    u, i = users[batch], items[batch]
    errors = np.sum(L[u] * R[i], axis=1) - ratings[batch]
    losses = errors**2 + 0.5 * reg * (user_weight[u] * np.sum(L[u] ** 2, axis=1)
                                      + item_weight[i] * np.sum(R[i] ** 2, axis=1))
    grad_L, grad_R = np.zeros_like(L), np.zeros_like(R)
    np.add.at(grad_L, u, 2 * errors[:, None] * R[i] + reg * user_weight[u][:, None] * L[u])
    np.add.at(grad_R, i, 2 * errors[:, None] * L[u] + reg * item_weight[i][:, None] * R[i])
    return float(losses.mean()), np.concatenate([grad_L, grad_R]).ravel() / len(batch)


@pytest.mark.parametrize("batch", [[0], [1, 4, 4, 17], list(range(30))],
                         ids=["one", "repeat", "all"])
def test_mf_gradient_matches_the_dense_reference(batch: list[int]) -> None:
    problem = mf_problem()
    support, values, loss = call_mf(problem, batch)
    want_loss, want_gradient = dense_mf(problem, batch)
    users, items = problem[0], problem[1]
    touched = {u * 3 + c for u in users[batch] for c in range(3)} | {
        (7 + i) * 3 + c for i in items[batch] for c in range(3)}
    assert sorted(support.tolist()) == sorted(touched)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(densified(support, values, problem[-1].shape[0]), want_gradient,
                               rtol=1e-12, atol=1e-15)


def test_mf_gradient_matches_finite_differences() -> None:
    problem = mf_problem(seed=1)
    params = problem[-1]
    batch = [2, 3, 3, 11, 25]
    support, values, _ = call_mf(problem, batch)
    gradient = densified(support, values, params.shape[0])
    step = 1e-6
    for j in range(params.shape[0]):
        losses = []
        for sign in (1.0, -1.0):
            shifted = params.copy()
            shifted[j] += sign * step
            losses.append(call_mf((*problem[:-1], shifted), batch)[2])
        np.testing.assert_allclose(gradient[j], (losses[0] - losses[1]) / (2 * step), rtol=1e-6,
                                   atol=1e-8, err_msg=f"coordinate {j}")


def test_mf_objective_is_the_mean_over_all_ratings() -> None:
    problem = mf_problem(seed=4)
    want, _ = dense_mf(problem, list(range(30)), reg=0.3)
    users, items, ratings, user_weight, item_weight, params = problem
    assert mf_objective(params, users, items, ratings, user_weight, item_weight, 7, 3,
                        0.3) == pytest.approx(want, rel=1e-12)


def test_mf_penalties_average_to_the_frobenius_norms() -> None:
    problem = mf_problem(seed=2)
    users, items, ratings, _, _, params = problem
    everything = list(range(30))
    with_penalty = call_mf(problem, everything, reg=0.4)[2]
    squared_error = mf_squared_error(params, users, items, ratings, 7, 3)
    factors = params.reshape(-1, 3)
    rated = np.concatenate([np.bincount(users, minlength=7), np.bincount(items, minlength=9)]) > 0
    assert with_penalty - squared_error == pytest.approx(0.2 * np.sum(factors[rated] ** 2),
                                                         rel=1e-12)
    assert call_mf(problem, everything, reg=0.0)[2] == pytest.approx(squared_error, rel=1e-12)


def test_mf_cost_does_not_grow_with_the_number_of_users() -> None:
    """One user's and one item's rows per rating are read and marked, nothing else: NaN
    parameters elsewhere stay unread among 10^6 users as among 7."""
    base = mf_problem(seed=3)
    users, items, ratings, user_weight, item_weight, params = base
    batch = [0, 5, 6]
    for n_users in (7, 1_000_000):
        shift = n_users - 7  # the same users, numbered among many more
        factors = np.full((n_users + 9, 3), np.nan)
        factors[shift:shift + 7] = params.reshape(-1, 3)[:7]
        factors[n_users:] = params.reshape(-1, 3)[7:]
        weights = np.full(n_users, np.nan)
        weights[shift:] = user_weight
        marks = np.full(factors.size, -7, dtype=np.int64)
        support, values, loss = call_mf((users + shift, items, ratings, weights, item_weight,
                                         factors.ravel()), batch, n_users=n_users, marks=marks)
        touched = np.array(sorted({(u + shift) * 3 + c for u in users[batch] for c in range(3)}
                                  | {(n_users + i) * 3 + c for i in items[batch]
                                     for c in range(3)}))
        assert np.isfinite(loss) and np.all(np.isfinite(values))
        assert np.array_equal(np.flatnonzero(marks != -7), touched)
        assert sorted(support.tolist()) == touched.tolist()
        assert support.shape[0] <= 2 * 3 * len(batch)


def test_max_row_nnz() -> None:
    assert max_row_nnz(np.array([0, 3, 3, 8, 9])) == 5
    assert max_row_nnz(np.array([0])) == 0


def test_linear_gradient_takes_float32_parameters() -> None:
    """The workloads train in float32 too: the kernel compiles for it and agrees to float32
    precision with the float64 answer."""
    rows, labels, inverse_frequency, params = linear_problem(seed=5)
    batch = [0, 1, 2]
    s64, v64, l64 = call(LOGISTIC, params, rows, labels, inverse_frequency, 0.1, batch)
    room = 64
    support = np.empty(room, dtype=np.int64)
    grad_values = np.empty(room, dtype=np.float32)
    marks = new_marks(params.shape[0])
    batch_rows = np.array(batch, dtype=np.int64)
    n = linear_support(rows.indptr, rows.indices, batch_rows, marks, support)
    l32 = linear_gradient(LOGISTIC, params.astype(np.float32), rows.indptr, rows.indices,
                          rows.values.astype(np.float32), labels.astype(np.float32),
                          inverse_frequency.astype(np.float32), np.float32(0.1), batch_rows,
                          marks, support, n, grad_values)
    assert support[:n].tolist() == s64.tolist()
    np.testing.assert_allclose(grad_values[:n], v64, rtol=1e-5, atol=1e-6)
    assert l32 == pytest.approx(l64, rel=1e-5)


def test_mf_gradient_takes_float32_parameters() -> None:
    problem = mf_problem(seed=6)
    users, items, ratings, user_weight, item_weight, params = problem
    batch = [0, 3, 8]
    s64, v64, l64 = call_mf(problem, batch)
    support = np.empty(18, dtype=np.int64)
    grad_values = np.empty(18, dtype=np.float32)
    marks = new_marks(params.shape[0])
    rows = np.array(batch, dtype=np.int64)
    n = mf_support(users, items, 7, 3, rows, marks, support)
    l32 = mf_gradient(params.astype(np.float32), users, items, ratings.astype(np.float32),
                      user_weight.astype(np.float32), item_weight.astype(np.float32), 7, 3,
                      np.float32(0.05), rows, marks, support, n, grad_values)
    assert support[:n].tolist() == s64.tolist()
    np.testing.assert_allclose(grad_values[:n], v64, rtol=1e-4, atol=1e-5)
    assert l32 == pytest.approx(l64, rel=1e-5)


# --- the split: support, then gradient ---------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", [LOGISTIC, HINGE], ids=["logistic", "hinge"])
def test_linear_split_equals_the_one_pass_kernel(kind: int, dtype) -> None:
    """Support then gradient give the one-pass kernel's support in its order, and its values
    and loss bit for bit, over minibatches with repeated rows, one after another on the same
    marks (each call must leave them ready for the next)."""
    rows, labels, inverse_frequency, params = linear_problem(seed=7, n_rows=60, n_features=50)
    values, labels, inverse_frequency, params = (a.astype(dtype) for a in (
        rows.values, labels, inverse_frequency, params))
    rng = np.random.default_rng(8)
    split_marks, one_pass_marks = new_marks(50), new_marks(50)
    for size in (1, 1, 1, 2, 5, 1, 17, 60, 200, 1):
        batch = rng.integers(0, 60, size).astype(np.int64)
        room = int(np.sum(np.diff(rows.indptr)[batch]))
        split = [np.full(room, -1, np.int64), np.full(room, np.nan, dtype)]
        reference = [np.full(room, -1, np.int64), np.full(room, np.nan, dtype)]
        n = linear_support(rows.indptr, rows.indices, batch, split_marks, split[0])
        if size > 1:
            assert np.array_equal(split_marks[split[0][:n]], np.arange(n))  # j's slot
            assert np.count_nonzero(split_marks >= 0) == n
        else:  # one row: its columns in order, no marks
            assert np.all(split_marks == -1)
            row = batch[0]
            assert np.array_equal(split[0][:n], rows.indices[rows.indptr[row]:rows.indptr[row + 1]])
        loss = linear_gradient(kind, params, rows.indptr, rows.indices, values, labels,
                               inverse_frequency, dtype(0.2), batch, split_marks, split[0], n,
                               split[1])
        n_ref, loss_ref = one_pass_linear_gradient(
            kind, params, rows.indptr, rows.indices, values, labels, inverse_frequency,
            dtype(0.2), batch, one_pass_marks, reference[0], reference[1])
        assert n == n_ref
        assert np.array_equal(split[0][:n], reference[0][:n])
        np.testing.assert_array_equal(split[1][:n], reference[1][:n])
        assert loss == loss_ref
        assert np.all(split_marks == -1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mf_split_equals_the_one_pass_kernel(dtype) -> None:
    users, items, ratings, user_weight, item_weight, params = mf_problem(seed=9, n_ratings=40)
    ratings, user_weight, item_weight, params = (a.astype(dtype) for a in (
        ratings, user_weight, item_weight, params))
    rng = np.random.default_rng(10)
    split_marks, one_pass_marks = new_marks(params.shape[0]), new_marks(params.shape[0])
    for size in (1, 3, 8, 40, 100):
        batch = rng.integers(0, 40, size).astype(np.int64)
        room = 2 * 3 * size
        split = [np.full(room, -1, np.int64), np.full(room, np.nan, dtype)]
        reference = [np.full(room, -1, np.int64), np.full(room, np.nan, dtype)]
        n = mf_support(users, items, 7, 3, batch, split_marks, split[0])
        assert np.array_equal(split_marks[split[0][:n]], np.arange(n))
        assert np.count_nonzero(split_marks >= 0) == n
        loss = mf_gradient(params, users, items, ratings, user_weight, item_weight, 7, 3,
                           dtype(0.05), batch, split_marks, split[0], n, split[1])
        n_ref, loss_ref = one_pass_mf_gradient(params, users, items, ratings, user_weight,
                                               item_weight, 7, 3, dtype(0.05), batch,
                                               one_pass_marks, reference[0], reference[1])
        assert n == n_ref
        assert np.array_equal(split[0][:n], reference[0][:n])
        np.testing.assert_array_equal(split[1][:n], reference[1][:n])
        assert loss == loss_ref
        assert np.all(split_marks == -1)


def test_workload_kernels_unpack_their_train_data() -> None:
    """The workload-facing kernels (train data and workspace as tuples) compute what the
    kernels they wrap compute from the same arrays."""
    rows, labels, inverse_frequency, params = linear_problem(seed=11)
    batch = np.array([0, 4, 4, 9], dtype=np.int64)
    train_data = (rows.indptr, rows.indices, rows.values, labels, inverse_frequency, 0.1)
    for kind, kernel in KERNELS.items():
        support, values = np.empty(24, np.int64), np.empty(24)
        workspace = (new_marks(params.shape[0]),)
        n = rows_support(train_data, batch, workspace, support)
        loss = kernel(params, train_data, batch, workspace, support, n, values)
        want_support, want_values, want_loss = call(kind, params, rows, labels,
                                                    inverse_frequency, 0.1, batch)
        assert support[:n].tolist() == want_support.tolist()
        np.testing.assert_array_equal(values[:n], want_values)
        assert loss == want_loss and np.all(workspace[0] == -1)
    problem = mf_problem(seed=12)
    users, items, ratings, user_weight, item_weight, params = problem
    batch = np.array([1, 2, 2, 20], dtype=np.int64)
    train_data = (users, items, ratings, user_weight, item_weight, 7, 3, 0.05)
    support, values = np.empty(24, np.int64), np.empty(24)
    workspace = (new_marks(params.shape[0]),)
    n = ratings_support(train_data, batch, workspace, support)
    loss = ratings_gradient(params, train_data, batch, workspace, support, n, values)
    want_support, want_values, want_loss = call_mf(problem, batch)
    assert support[:n].tolist() == want_support.tolist()
    np.testing.assert_array_equal(values[:n], want_values)
    assert loss == want_loss and np.all(workspace[0] == -1)


def test_the_logistic_loss_and_slope_from_one_exponential_equal_the_two_exponential_form():
    """Bit for bit, the 0 where the sigmoid's branches meet, the tails, and random margins."""
    from asgdbench.workloads.sparse_objectives import _logistic_and_sigmoid

    rng = np.random.default_rng(3)
    margins = np.concatenate([[0.0, -0.0, 1e-300, -1e-300, 5e-324, 1.0, -1.0, 36.0, -36.0,
                               709.0, -709.0, 745.0, -745.0, 1e308, -1e308],
                              rng.normal(0, 5, 2000), rng.normal(0, 1e-8, 200)])
    for m in margins:
        assert _logistic_and_sigmoid(m) == (log1p_exp(m), sigmoid(m)), m
