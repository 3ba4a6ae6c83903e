"""Convolution as im2col + BLAS: the wider layers' kernels (see :func:`prefers_gemm`)."""

from __future__ import annotations

import numpy as np
from numba import njit

from asgdbench.workloads.layer_conv import REDUCE

GEMM_TAPS = 64
GEMM_MAPS = 12
"""A conv layer with at least GEMM_TAPS taps per output (``in_c * k * k``) and GEMM_MAPS output
maps (the GEMM's rows) uses im2col + BLAS."""

GEMM_COLUMNS = 1024
"""Pixels (columns of the im2col matrix) per GEMM: enough samples per call for BLAS to run at
speed, few enough that the matrices stay in cache whatever the batch size."""


def prefers_gemm(in_c: int, k: int, out_c: int) -> bool:
    """Whether a conv layer runs faster as im2col + BLAS than as direct loops (measured: see :mod:`.layers`)."""
    return in_c * k * k >= GEMM_TAPS and out_c >= GEMM_MAPS


@njit(nogil=True, cache=True)
def gemm_chunk(in_c, height, width, k):
    """Samples per im2col GEMM for a layer of this shape (at least one)."""
    return max(1, GEMM_COLUMNS // ((height - k + 1) * (width - k + 1)))


@njit(nogil=True, cache=True)
def gemm_scratch_size(in_c, height, width, out_c, k):
    """Values of scratch :func:`conv_forward_gemm` and :func:`conv_backward_gemm` need."""
    columns = gemm_chunk(in_c, height, width, k) * (height - k + 1) * (width - k + 1)
    taps = in_c * k * k
    return 2 * taps * columns + out_c * columns + out_c * taps


@njit(nogil=True, cache=True)
def _im2col(x, cols, first, count, in_c, height, width, k):
    """``cols[(c, di, dj), (b, i, j)] = x[first + b, c, i + di, j + dj]`` for ``count`` samples."""
    out_h, out_w = height - k + 1, width - k + 1
    pixels, in_size = out_h * out_w, in_c * height * width
    for c in range(in_c):
        for di in range(k):
            for dj in range(k):
                r = (c * k + di) * k + dj
                row = cols[r]
                for b in range(count):
                    for i in range(out_h):
                        at = (first + b) * in_size + (c * height + i + di) * width + dj
                        source = x[at:at + out_w]
                        target = row[b * pixels + i * out_w:b * pixels + (i + 1) * out_w]
                        for j in range(out_w):  # see layer_conv.conv_forward
                            target[j] = source[j]


@njit(nogil=True, cache=True)
def _col2im_add(d_cols, d_x, first, count, in_c, height, width, k):
    """The adjoint of :func:`_im2col`: add each column entry back onto the pixel it came from."""
    out_h, out_w = height - k + 1, width - k + 1
    pixels, in_size = out_h * out_w, in_c * height * width
    for c in range(in_c):
        for di in range(k):
            for dj in range(k):
                r = (c * k + di) * k + dj
                row = d_cols[r]
                for b in range(count):
                    for i in range(out_h):
                        at = (first + b) * in_size + (c * height + i + di) * width + dj
                        source = row[b * pixels + i * out_w:b * pixels + (i + 1) * out_w]
                        target = d_x[at:at + out_w]
                        for j in range(out_w):
                            target[j] += source[j]


@njit(nogil=True, cache=True)
def kept_columns_size(in_c, height, width, k):
    """Values per sample of the im2col matrix that :func:`conv_forward_gemm` can keep for the backward."""
    return in_c * k * k * (height - k + 1) * (width - k + 1)


@njit(nogil=True, cache=True)
def _columns(scratch, kept, first, count, taps, pixels):
    """Where the (taps x count*pixels) im2col matrix of samples ``first ..`` lives, and whether
    that is in ``kept`` (chunk after chunk, ``taps * pixels`` values per sample) or, when
    ``kept`` is None or too small, at the start of ``scratch``."""
    columns = count * pixels
    if kept is not None:
        if kept.shape[0] >= (first + count) * taps * pixels:
            at = first * taps * pixels
            return kept[at:at + taps * columns].reshape((taps, columns)), True
    return scratch[:taps * columns].reshape((taps, columns)), False


@njit(nogil=True, cache=True)
def conv_forward_gemm(x, weights, bias, out, scratch, batch, in_c, height, width, out_c, k,
                      relu=False, kept=None):
    """:func:`conv_forward` as ``Y = W (out_c x in_c*k*k) @ im2col(x)`` by BLAS, a chunk of
    samples per GEMM; ``scratch`` holds :func:`gemm_scratch_size` values.

    Given ``kept`` with ``batch * kept_columns_size(...)`` values, the im2col matrices are
    built there and left for :func:`conv_backward_gemm`, which then skips building them again
    (LeNet's second layer: the copy is about a quarter of the layer's backward time).
    """
    zero = x.dtype.type(0)
    out_h, out_w = height - k + 1, width - k + 1
    taps, pixels = in_c * k * k, out_h * out_w
    chunk = gemm_chunk(in_c, height, width, k)
    w = weights[:out_c * taps].reshape((out_c, taps))
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        columns = count * pixels
        cols, _ = _columns(scratch, kept, first, count, taps, pixels)
        # Y^T = cols^T W^T rather than Y = W cols: OpenBLAS (Haswell kernel) runs this
        # orientation 1.3x faster for LeNet's second layer (16 x 150 by 150 x 1024)
        y_t = scratch[taps * columns:(taps + out_c) * columns].reshape((columns, out_c))
        _im2col(x, cols, first, count, in_c, height, width, k)
        np.dot(cols.T, w.T, y_t)
        for b in range(count):
            o = (first + b) * out_c * pixels
            for f in range(out_c):
                target = out[o + f * pixels:o + (f + 1) * pixels]
                if relu:
                    for p in range(pixels):
                        target[p] = max(y_t[b * pixels + p, f] + bias[f], zero)
                else:
                    for p in range(pixels):
                        target[p] = y_t[b * pixels + p, f] + bias[f]


@njit(nogil=True, cache=True, fastmath=REDUCE)
def conv_backward_gemm(x, weights, d_out, d_weights, d_bias, d_x, scratch, batch, in_c, height,
                       width, out_c, k, need_d_x, kept=None):
    """:func:`conv_backward` by BLAS: ``dW += dY @ cols^T``, ``d cols = W^T @ dY``, then col2im.

    With ``kept`` (see :func:`conv_forward_gemm`) the im2col matrices are read from there: the
    forward pass of the same ``x`` must have built them.
    """
    out_h, out_w = height - k + 1, width - k + 1
    taps, pixels = in_c * k * k, out_h * out_w
    chunk = gemm_chunk(in_c, height, width, k)
    w = weights[:out_c * taps].reshape((out_c, taps))
    d_w = d_weights[:out_c * taps].reshape((out_c, taps))
    d_w[:, :] = 0.0
    d_bias[:out_c] = 0.0
    if need_d_x:
        d_x[:batch * in_c * height * width] = 0.0
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        columns = count * pixels
        cols, in_kept = _columns(scratch, kept, first, count, taps, pixels)
        d_cols = scratch[taps * columns:2 * taps * columns].reshape((taps, columns))
        d_y = scratch[2 * taps * columns:(2 * taps + out_c) * columns].reshape((out_c, columns))
        d_w_chunk_t = scratch[(2 * taps + out_c) * columns:
                              (2 * taps + out_c) * columns + out_c * taps].reshape((taps, out_c))
        for b in range(count):
            o = (first + b) * out_c * pixels
            for f in range(out_c):
                values = d_out[o + f * pixels:o + (f + 1) * pixels]
                target = d_y[f, b * pixels:(b + 1) * pixels]
                total = x.dtype.type(0)
                for p in range(pixels):
                    target[p] = values[p]
                    total += values[p]
                d_bias[f] += total
        if not in_kept:  # else the forward pass built them there
            _im2col(x, cols, first, count, in_c, height, width, k)
        np.dot(cols, d_y.T, d_w_chunk_t)  # dW^T = cols dY^T: 1.5x faster than dY cols^T here
        for f in range(out_c):
            for t in range(taps):
                d_w[f, t] += d_w_chunk_t[t, f]
        if need_d_x:
            np.dot(w.T, d_y, d_cols)
            _col2im_add(d_cols, d_x, first, count, in_c, height, width, k)
