"""Sparse gradients in O(nnz): the minibatch's union support as (coordinates, values).

The objectives are the HOGWILD! paper's (Niu et al., 2011). A linear model on CSR rows:

    f_i(w) = loss(y_i * x_i . w) + (reg / 2) * sum_{j in supp(x_i)} w_j^2 * n / d_j

with ``d_j`` the number of training rows that hold feature ``j`` (``inverse_frequency[j]``
is ``n / d_j``): the regularizer is applied only on the coordinates an example touches, so
averaged over the training rows it is ``(reg / 2) * ||w||^2`` while each example's gradient
stays on its own support. Matrix factorization of ratings ``M``, rank ``r``, with
``params = [L (n_users x r), R (n_items x r)]`` flattened row-major:

    f_(u,i)(L, R) = (L_u . R_i - M_ui)^2 + (reg / 2) * (||L_u||^2 * N / c_u + ||R_i||^2 * N / c_i)

with ``c_u``, ``c_i`` the user's and item's training ratings and ``N`` all of them; averaged
over the ratings this is the squared error plus ``(reg / 2) * (||L||^2 + ||R||^2)``.

Each objective has two kernels, run one after the other on a minibatch (the sparse
workload's ``support`` and ``gradient``, see :class:`asgdbench.plugins.workloads.Workload`):
the *support* kernel lists the union of the rows' supports in ``support[:n]`` (first-touched
order, each coordinate once) and marks each listed coordinate ``j`` with its slot
(``marks[j]``: a workspace of one int64 per parameter, all negative between minibatches);
the *gradient* kernel then returns the minibatch mean ``(1 / B) sum_b f_rows[b]`` and writes
its partial derivatives into ``grad_values[:n]``, aligned with ``support``, finding each
coordinate's slot by its mark, and restores the marks to -1 (a linear minibatch of one row
needs no marks: its support is the row's columns, in order). The gradient is zero outside
the support; the kernels read ``params`` and touch ``marks`` only there, so the cost is
O(nnz of the minibatch), whatever the number of parameters. ``support`` and ``grad_values``
need room for the minibatch's nnz (at most ``B * max_row_nnz``; for MF, ``2 * r * B``).
Splitting the pass lets a strategy read the support's coordinates (under a lock, from a
pinned version) before the gradient is computed from them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LOGISTIC = 0
HINGE = 1


@njit(inline="always")
def _unmark(marks, support, n_support):
    for k in range(n_support):
        marks[support[k]] = -1


@njit(inline="always")
def _margin(params, indptr, indices, values, row):
    z = 0.0
    for k in range(indptr[row], indptr[row + 1]):
        z += params[indices[k]] * values[k]
    return z


@njit(inline="always")
def _logistic_and_sigmoid(m):
    """``(log(1 + exp(m)), 1 / (1 + exp(-m)))`` without overflow, from one exponential (the
    loss and the slope share it; tests/sparse_one_pass.py holds the two-exponential form
    this equals bit for bit)."""
    if m > 0.0:
        e = np.exp(-m)
        return m + np.log1p(e), 1.0 / (1.0 + e)
    e = np.exp(m)
    return np.log1p(e), e / (1.0 + e)


@njit(inline="always")
def _loss_and_slope(loss_kind, y, z):
    """The loss of label ``y`` at margin ``z`` and its derivative with respect to ``z``."""
    if loss_kind == LOGISTIC:
        loss, sigmoid = _logistic_and_sigmoid(-y * z)
        return loss, -y * sigmoid
    if y * z < 1.0:  # hinge: the subgradient at the kink is taken from the left
        return 1.0 - y * z, -y
    return 0.0, 0.0


@njit(nogil=True, cache=True, inline="always")
def linear_support(indptr, indices, rows, marks, support):
    """The union of the ``rows``' columns into ``support[:n]`` in first-touched order, each
    column ``j`` marked with its slot (``marks[j]``, left for :func:`linear_gradient`); n.

    One row is its own support, in its order, unmarked: a canonical CSR row holds each
    column once, and skipping the marks (with :func:`linear_gradient` inlined) took the
    kernels of a batch-1 epoch from 2.2x to 1.75x scikit-learn's (rows in order,
    ``benchmarks/scripts/sparse_speed.py``'s "kernels alone")."""
    if rows.shape[0] == 1:
        start = indptr[rows[0]]
        n_support = indptr[rows[0] + 1] - start
        for k in range(n_support):
            support[k] = indices[start + k]
        return n_support
    n_support = 0
    for b in range(rows.shape[0]):
        row = rows[b]
        for k in range(indptr[row], indptr[row + 1]):
            j = indices[k]
            if marks[j] < 0:
                marks[j] = n_support
                support[n_support] = j
                n_support += 1
    return n_support


@njit(inline="always")
def _one_row_gradient(loss_kind, params, indptr, indices, values, labels, inverse_frequency,
                      reg, row, grad_values):
    """:func:`linear_gradient` of a minibatch of one row: the same arithmetic in the same
    order, so the same numbers (a zero may keep its sign, where the multi-row path's sum from
    0.0 makes it +0.0), each slot the row's own position, no marks."""
    loss, slope = _loss_and_slope(loss_kind, labels[row],
                                  _margin(params, indptr, indices, values, row))
    total = loss
    start = indptr[row]
    for k in range(indptr[row + 1] - start):
        j = indices[start + k]
        penalty = reg * inverse_frequency[j]
        total += 0.5 * penalty * params[j] * params[j]
        grad_values[k] = slope * values[start + k] + penalty * params[j]
    return total


@njit(nogil=True, cache=True, inline="always")
def linear_gradient(loss_kind, params, indptr, indices, values, labels, inverse_frequency,
                    reg, rows, marks, support, n_support, grad_values):
    """The minibatch loss of the linear objective (see the module), its partial derivatives
    in ``grad_values[:n_support]``, on the support and marks :func:`linear_support` left;
    the marks are restored (one row had none: its slots are its own order)."""
    if rows.shape[0] == 1:
        return _one_row_gradient(loss_kind, params, indptr, indices, values, labels,
                                 inverse_frequency, reg, rows[0], grad_values)
    for slot in range(n_support):
        grad_values[slot] = 0.0
    total = 0.0
    scale = 1.0 / rows.shape[0]
    for b in range(rows.shape[0]):
        row = rows[b]
        y = labels[row]
        loss, slope = _loss_and_slope(loss_kind, y, _margin(params, indptr, indices, values, row))
        total += loss
        for k in range(indptr[row], indptr[row + 1]):
            j = indices[k]
            penalty = reg * inverse_frequency[j]
            total += 0.5 * penalty * params[j] * params[j]
            grad_values[marks[j]] += scale * (slope * values[k] + penalty * params[j])
    _unmark(marks, support, n_support)
    return total * scale


# The workload-facing kernels (asgdbench.plugins.workloads.Workload, sparse): ``train_data``
# is ``(indptr, indices, values, labels, inverse_frequency, reg)`` for a linear model and
# ``(users, items, ratings, user_weight, item_weight, n_users, rank, reg)`` for matrix
# factorization; the workspace is ``(marks,)``, one per thread.


@njit(nogil=True, cache=True)
def rows_support(train_data, rows, workspace, support):
    """:func:`linear_support` of a linear workload's minibatch."""
    return linear_support(train_data[0], train_data[1], rows, workspace[0], support)


@njit(nogil=True, cache=True)
def logistic_gradient(params, train_data, rows, workspace, support, n_support, values):
    """:func:`linear_gradient` with the logistic loss log(1 + exp(-y x.w))."""
    indptr, indices, x, labels, inverse_frequency, reg = train_data
    return linear_gradient(LOGISTIC, params, indptr, indices, x, labels, inverse_frequency,
                           reg, rows, workspace[0], support, n_support, values)


@njit(nogil=True, cache=True)
def hinge_gradient(params, train_data, rows, workspace, support, n_support, values):
    """:func:`linear_gradient` with the hinge loss max(0, 1 - y x.w) of the sparse SVM."""
    indptr, indices, x, labels, inverse_frequency, reg = train_data
    return linear_gradient(HINGE, params, indptr, indices, x, labels, inverse_frequency,
                           reg, rows, workspace[0], support, n_support, values)


@njit(nogil=True, cache=True)
def linear_loss(loss_kind, params, indptr, indices, values, labels):
    """The mean loss over all rows, without the regularizer (what a test set is scored on)."""
    total = 0.0
    n_rows = indptr.shape[0] - 1
    for row in range(n_rows):
        total += _loss_and_slope(loss_kind, labels[row],
                                 _margin(params, indptr, indices, values, row))[0]
    return total / max(n_rows, 1)


@njit(nogil=True, cache=True)
def linear_objective(loss_kind, params, indptr, indices, values, labels, inverse_frequency, reg):
    """The full objective, the mean of every row's ``f_i`` (what training minimizes), in one
    pass over the rows without support bookkeeping."""
    total = 0.0
    n_rows = indptr.shape[0] - 1
    for row in range(n_rows):
        total += _loss_and_slope(loss_kind, labels[row],
                                 _margin(params, indptr, indices, values, row))[0]
        for k in range(indptr[row], indptr[row + 1]):
            j = indices[k]
            total += 0.5 * reg * inverse_frequency[j] * params[j] * params[j]
    return total / max(n_rows, 1)


@njit(nogil=True, cache=True)
def linear_accuracy(params, indptr, indices, values, labels):
    """The fraction of rows whose margin has the label's sign (a zero margin counts as wrong)."""
    right = 0
    n_rows = indptr.shape[0] - 1
    for row in range(n_rows):
        if labels[row] * _margin(params, indptr, indices, values, row) > 0.0:
            right += 1
    return right / max(n_rows, 1)


@njit(nogil=True, cache=True)
def mf_support(users, items, n_users, rank, rows, marks, support):
    """The ``rank`` coordinates of each rating's user row of L and item row of R, each once,
    into ``support[:n]`` (first-touched order), marked with their slots; n."""
    n_support = 0
    for b in range(rows.shape[0]):
        k = rows[b]
        left = users[k] * rank
        right = (n_users + items[k]) * rank
        for c in range(rank):
            if marks[left + c] < 0:
                marks[left + c] = n_support
                support[n_support] = left + c
                n_support += 1
            if marks[right + c] < 0:
                marks[right + c] = n_support
                support[n_support] = right + c
                n_support += 1
    return n_support


@njit(nogil=True, cache=True)
def mf_gradient(params, users, items, ratings, user_weight, item_weight, n_users, rank, reg,
                rows, marks, support, n_support, grad_values):
    """The minibatch loss of matrix factorization (see the module), its partial derivatives
    in ``grad_values[:n_support]``, on the support and marks :func:`mf_support` left.

    ``user_weight[u]`` is ``N / c_u`` and ``item_weight[i]`` is ``N / c_i``.
    """
    for slot in range(n_support):
        grad_values[slot] = 0.0
    total = 0.0
    scale = 1.0 / rows.shape[0]
    for b in range(rows.shape[0]):
        k = rows[b]
        left = users[k] * rank
        right = (n_users + items[k]) * rank
        error = -ratings[k]
        for c in range(rank):
            error += params[left + c] * params[right + c]
        total += error * error
        penalty_left = reg * user_weight[users[k]]
        penalty_right = reg * item_weight[items[k]]
        for c in range(rank):
            lu = params[left + c]
            ri = params[right + c]
            total += 0.5 * (penalty_left * lu * lu + penalty_right * ri * ri)
            grad_values[marks[left + c]] += scale * (2.0 * error * ri + penalty_left * lu)
            grad_values[marks[right + c]] += scale * (2.0 * error * lu + penalty_right * ri)
    _unmark(marks, support, n_support)
    return total * scale


@njit(nogil=True, cache=True)
def ratings_support(train_data, rows, workspace, support):
    """:func:`mf_support` of a matrix factorization workload's minibatch."""
    return mf_support(train_data[0], train_data[1], train_data[5], train_data[6], rows,
                      workspace[0], support)


@njit(nogil=True, cache=True)
def ratings_gradient(params, train_data, rows, workspace, support, n_support, values):
    """:func:`mf_gradient` of a matrix factorization workload's minibatch."""
    users, items, ratings, user_weight, item_weight, n_users, rank, reg = train_data
    return mf_gradient(params, users, items, ratings, user_weight, item_weight, n_users, rank,
                       reg, rows, workspace[0], support, n_support, values)


@njit(nogil=True, cache=True)
def mf_objective(params, users, items, ratings, user_weight, item_weight, n_users, rank, reg):
    """The full matrix factorization objective, the mean of every rating's ``f_(u,i)``."""
    total = 0.0
    for k in range(ratings.shape[0]):
        left = users[k] * rank
        right = (n_users + items[k]) * rank
        error = -ratings[k]
        squares_left = 0.0
        squares_right = 0.0
        for c in range(rank):
            error += params[left + c] * params[right + c]
            squares_left += params[left + c] * params[left + c]
            squares_right += params[right + c] * params[right + c]
        total += error * error + 0.5 * reg * (user_weight[users[k]] * squares_left
                                              + item_weight[items[k]] * squares_right)
    return total / max(ratings.shape[0], 1)


@njit(nogil=True, cache=True)
def mf_squared_error(params, users, items, ratings, n_users, rank):
    """The mean squared error over the given ratings, without the penalties (RMSE squared)."""
    total = 0.0
    for k in range(ratings.shape[0]):
        left = users[k] * rank
        right = (n_users + items[k]) * rank
        error = -ratings[k]
        for c in range(rank):
            error += params[left + c] * params[right + c]
        total += error * error
    return total / max(ratings.shape[0], 1)


def new_marks(n_params: int) -> np.ndarray:
    """A ``marks`` workspace for a kernel: one -1 per parameter."""
    return np.full(n_params, -1, dtype=np.int64)


def max_row_nnz(indptr: np.ndarray) -> int:
    """The most non-zeros in one row: ``batch_size`` times this bounds a minibatch's support."""
    return int(np.max(np.diff(indptr))) if indptr.shape[0] > 1 else 0
