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

A kernel returns the minibatch mean ``(1 / B) sum_b f_rows[b]`` and its gradient, which is
zero outside the union of the rows' supports: ``support[:n]`` lists those coordinates (in
first-touched order) and ``grad_values[:n]`` their partial derivatives. It reads ``params``
only there, and touches the ``marks`` workspace (one int64 per parameter, all negative
between calls: ``marks[j]`` is ``j``'s slot in ``support`` while the kernel runs) only
there, restoring -1: the cost is O(nnz of the minibatch), whatever the number of parameters.
``support`` and ``grad_values`` need room for the minibatch's nnz (for MF, ``2 * r * B``).
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
def _log1p_exp(z):
    """log(1 + exp(z)) without overflow."""
    if z > 0.0:
        return z + np.log1p(np.exp(-z))
    return np.log1p(np.exp(z))


@njit(inline="always")
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z)
    return e / (1.0 + e)


@njit(inline="always")
def _margin(params, indptr, indices, values, row):
    z = 0.0
    for k in range(indptr[row], indptr[row + 1]):
        z += params[indices[k]] * values[k]
    return z


@njit(inline="always")
def _loss_and_slope(loss_kind, y, z):
    """The loss of label ``y`` at margin ``z`` and its derivative with respect to ``z``."""
    if loss_kind == LOGISTIC:
        return _log1p_exp(-y * z), -y * _sigmoid(-y * z)
    if y * z < 1.0:  # hinge: the subgradient at the kink is taken from the left
        return 1.0 - y * z, -y
    return 0.0, 0.0


@njit(nogil=True, cache=True)
def linear_gradient(loss_kind, params, indptr, indices, values, labels, inverse_frequency,
                    reg, rows, marks, support, grad_values):
    """``(n_support, loss)`` of the linear objective for the minibatch ``rows`` (see the module)."""
    n_support = 0
    total = 0.0
    scale = 1.0 / rows.shape[0]
    for b in range(rows.shape[0]):
        row = rows[b]
        y = labels[row]
        loss, slope = _loss_and_slope(loss_kind, y, _margin(params, indptr, indices, values, row))
        total += loss
        for k in range(indptr[row], indptr[row + 1]):
            j = indices[k]
            slot = marks[j]  # j's place in the support; a new one if absent (written out:
            if slot < 0:  # as a helper, even inlined, it made the kernel three times slower)
                slot = n_support
                marks[j] = slot
                support[slot] = j
                grad_values[slot] = 0.0
                n_support += 1
            penalty = reg * inverse_frequency[j]
            total += 0.5 * penalty * params[j] * params[j]
            grad_values[slot] += scale * (slope * values[k] + penalty * params[j])
    _unmark(marks, support, n_support)
    return n_support, total * scale


@njit(nogil=True, cache=True)
def logistic_gradient(params, indptr, indices, values, labels, inverse_frequency, reg, rows,
                      marks, support, grad_values):
    """:func:`linear_gradient` with the logistic loss log(1 + exp(-y x.w))."""
    return linear_gradient(LOGISTIC, params, indptr, indices, values, labels, inverse_frequency,
                           reg, rows, marks, support, grad_values)


@njit(nogil=True, cache=True)
def hinge_gradient(params, indptr, indices, values, labels, inverse_frequency, reg, rows,
                   marks, support, grad_values):
    """:func:`linear_gradient` with the hinge loss max(0, 1 - y x.w) of the sparse SVM."""
    return linear_gradient(HINGE, params, indptr, indices, values, labels, inverse_frequency,
                           reg, rows, marks, support, grad_values)


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
def mf_gradient(params, users, items, ratings, user_weight, item_weight, n_users, rank, reg,
                rows, marks, support, grad_values):
    """``(n_support, loss)`` of matrix factorization for the ratings ``rows`` (see the module).

    ``user_weight[u]`` is ``N / c_u`` and ``item_weight[i]`` is ``N / c_i``. Each rating
    touches the ``rank`` coordinates of its user's row of L and its item's row of R.
    """
    n_support = 0
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
            slot = marks[left + c]
            if slot < 0:
                slot = n_support
                marks[left + c] = slot
                support[slot] = left + c
                grad_values[slot] = 0.0
                n_support += 1
            grad_values[slot] += scale * (2.0 * error * ri + penalty_left * lu)
            slot = marks[right + c]
            if slot < 0:
                slot = n_support
                marks[right + c] = slot
                support[slot] = right + c
                grad_values[slot] = 0.0
                n_support += 1
            grad_values[slot] += scale * (2.0 * error * lu + penalty_right * ri)
    _unmark(marks, support, n_support)
    return n_support, total * scale


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
