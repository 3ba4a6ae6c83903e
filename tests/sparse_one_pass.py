"""The earlier one-pass sparse kernels (support and gradient in one loop), kept as the
reference the split kernels of asgdbench.workloads.sparse_objectives are checked against:
the split must give the same support, in the same order, and bit for bit the same values
and loss (it does the same arithmetic in the same order)."""

from __future__ import annotations

import numpy as np
from numba import njit

from asgdbench.workloads.sparse_objectives import _loss_and_slope, _margin, _unmark


@njit(nogil=True, cache=False)
def one_pass_linear_gradient(loss_kind, params, indptr, indices, values, labels,
                             inverse_frequency, reg, rows, marks, support, grad_values):
    """``(n_support, loss)`` of the linear objective for the minibatch ``rows``."""
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


@njit(nogil=True, cache=False)
def one_pass_mf_gradient(params, users, items, ratings, user_weight, item_weight, n_users, rank,
                         reg, rows, marks, support, grad_values):
    """``(n_support, loss)`` of matrix factorization for the ratings ``rows``.

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


@njit
def log1p_exp(z):
    """log(1 + exp(z)) without overflow, the loss's earlier form (one exponential of its own)."""
    if z > 0.0:
        return z + np.log1p(np.exp(-z))
    return np.log1p(np.exp(z))


@njit
def sigmoid(z):
    """1 / (1 + exp(-z)), the slope's earlier form (another exponential)."""
    if z >= 0.0:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z)
    return e / (1.0 + e)
