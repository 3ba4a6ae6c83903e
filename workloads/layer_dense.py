"""The dense layer (by BLAS), ReLU in place and the softmax cross-entropy loss: an MLP's parts,
and every network's last layers."""

from __future__ import annotations

import numpy as np
from numba import njit

# --- ReLU, in place --------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def relu_forward(x, n):
    values = x[:n]
    zero = values.dtype.type(0)  # max(float32, 0) would promote to float64
    for q in range(n):
        values[q] = max(values[q], zero)


@njit(nogil=True, cache=True)
def relu_backward(out, d, n):
    """Zero ``d`` where the ReLU's output is zero (its input was not positive)."""
    values, deltas = out[:n], d[:n]
    for q in range(n):
        if values[q] <= 0:
            deltas[q] = 0


# --- dense -----------------------------------------------------------------------------------


SMALL_BATCH = 64
"""Up to this many rows a dense layer computes its products transposed (see :func:`dense_forward`)."""


def dense_scratch_size(batch: int, widest: int) -> int:
    """Scratch values :func:`dense_forward` and :func:`dense_backward` need at this batch size."""
    return batch * widest if batch <= SMALL_BATCH else 0


@njit(nogil=True, cache=True)
def dense_forward(x, weights, bias, out, scratch, batch, fan_in, fan_out, relu=False):
    """``out = x @ W + b``; ``W`` is ``(fan_in, fan_out)`` flattened.

    Up to :data:`SMALL_BATCH` rows, with at least 32 outputs and ``scratch`` of
    ``batch * fan_out`` values, it computes ``out^T = W^T x^T`` and transposes while adding
    the bias: OpenBLAS (Haswell kernel, one thread) runs that orientation 1.3x faster at
    batch 16 on 784x128 and 128x128 weights, where ``x @ W`` spends its time packing W for
    only 16 rows (at 128x10 the plain call is faster). Hand-written loop kernels were
    slower than either BLAS call at every shape measured (0.7-1.0x; 0.2x at 128x10).
    With ``relu`` the output is ``max(out, 0)`` (a following ReLU, fused into the bias pass).
    """
    zero = out.dtype.type(0)
    z = out[:batch * fan_out].reshape((batch, fan_out))
    h = x[:batch * fan_in].reshape((batch, fan_in))
    w = weights.reshape((fan_in, fan_out))
    if batch <= SMALL_BATCH and fan_out >= 32 and scratch.shape[0] >= batch * fan_out:
        z_t = scratch[:fan_out * batch].reshape((fan_out, batch))
        np.dot(w.T, h.T, z_t)
        for r in range(batch):
            for c in range(fan_out):
                z[r, c] = max(z_t[c, r] + bias[c], zero) if relu else z_t[c, r] + bias[c]
        return
    np.dot(h, w, z)
    for r in range(batch):
        for c in range(fan_out):
            z[r, c] = max(z[r, c] + bias[c], zero) if relu else z[r, c] + bias[c]


@njit(nogil=True, cache=True)
def dense_backward(x, weights, d_out, d_weights, d_bias, d_x, scratch, batch, fan_in, fan_out,
                   need_d_x):
    """``dW = x^T d_out``, ``db = sum_rows d_out`` (overwritten) and, if ``need_d_x``, ``d_x = d_out W^T``.

    Up to :data:`SMALL_BATCH` rows ``d_x`` is computed as ``(W d_out^T)^T`` through ``scratch``
    (``batch * fan_in`` values): 1.2-1.9x faster than ``d_out @ W^T`` at batch 16 (as in
    :func:`dense_forward`).
    """
    d_z = d_out[:batch * fan_out].reshape((batch, fan_out))
    h = x[:batch * fan_in].reshape((batch, fan_in))
    w = weights.reshape((fan_in, fan_out))
    np.dot(h.T, d_z, d_weights.reshape((fan_in, fan_out)))
    for c in range(fan_out):
        d_bias[c] = 0.0
    for r in range(batch):
        for c in range(fan_out):
            d_bias[c] += d_z[r, c]
    if not need_d_x:
        return
    d_h = d_x[:batch * fan_in].reshape((batch, fan_in))
    if batch <= SMALL_BATCH and scratch.shape[0] >= batch * fan_in:
        d_h_t = scratch[:fan_in * batch].reshape((fan_in, batch))
        np.dot(w, d_z.T, d_h_t)
        for r in range(batch):
            for c in range(fan_in):
                d_h[r, c] = d_h_t[c, r]
    else:
        np.dot(d_z, w.T, d_h)


# --- softmax cross-entropy -------------------------------------------------------------------


@njit(nogil=True, cache=True)
def softmax_cross_entropy(logits, labels, delta):
    """Mean loss of ``logits`` (batch x classes) against ``labels``; ``delta`` gets d(loss)/d(logits).

    The gradient is ``(softmax - onehot) / batch``; sums run in float64.
    """
    batch, n_classes = logits.shape
    total = 0.0
    for r in range(batch):
        top = logits[r, 0]
        for c in range(1, n_classes):
            top = max(top, logits[r, c])
        norm = 0.0
        for c in range(n_classes):
            norm += np.exp(np.float64(logits[r, c]) - top)
        label = labels[r]
        total += np.log(norm) + top - logits[r, label]
        for c in range(n_classes):
            delta[r, c] = np.exp(np.float64(logits[r, c]) - top) / norm / batch
        delta[r, label] -= 1.0 / batch
    return total / batch


@njit(nogil=True, cache=True)
def loss_and_hits(logits, labels):
    """Summed cross-entropy and number of correct arg-max predictions (for evaluation)."""
    batch, n_classes = logits.shape
    total = 0.0
    correct = 0
    for r in range(batch):
        top = logits[r, 0]
        best = 0
        for c in range(1, n_classes):
            if logits[r, c] > top:
                top, best = logits[r, c], c
        norm = 0.0
        for c in range(n_classes):
            norm += np.exp(np.float64(logits[r, c]) - top)
        total += np.log(norm) + top - logits[r, labels[r]]
        correct += best == labels[r]
    return total, correct

