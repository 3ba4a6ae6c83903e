"""Layer kernels: forward and backward of conv, 2x2 max-pool, ReLU, dense and softmax cross-entropy.

Every kernel is ``@njit(nogil=True)`` and allocation-free: it reads and writes
flat buffers that the caller owns (see :mod:`.network`), with the shapes passed
as integers. Tensors are batch-first, channels-first (``B, C, H, W``), row-major.

How each layer computes (measured per layer with ``benchmarks/scripts/cnn_speed.py``):

- **Convolution: direct loops for narrow layers, im2col + BLAS for wide ones**
  (:func:`prefers_gemm`). With few taps per output (``in_c * k * k``: 9 for
  ``cnn``'s first layer, 36 for its second, 25 for LeNet's first) or few
  output maps (6 for LeNet's first layer on CIFAR-10, 75 taps) the im2col GEMM
  is skinny and copying into the column matrix costs as much as the product,
  so the direct loops win (float32, one thread, batch 16 and 128: 1.2-3.6x
  faster on those layers). LeNet's second layer (150 taps, 16 maps, on MNIST
  and CIFAR-10) is where im2col + BLAS wins: forward 1.1-1.5x, backward
  1.6-2.6x. ``benchmarks/scripts/cnn_speed.py --layers`` measures both per
  layer, on the machine at hand.
  The direct loops run over a "wide row": output pixel ``(i, j)`` is computed
  at flat index ``i * W + j`` of the input's width ``W``, so each
  (channel, tap) step is one long contiguous multiply-add over ``(Ho-1)*W+Wo``
  elements that the compiler vectorizes, instead of ``Ho`` short rows of
  ``Wo``. The ``K-1`` columns per row that fall off the valid window are
  computed and discarded (forward) or held at zero (backward). On long rows a
  pass takes up to five taps of a kernel row at once (:data:`TAP_BLOCK_SPAN`).
- **Dense: BLAS** (``np.dot`` into a preallocated ``out``), transposed at small
  batches (:func:`dense_forward`); hand-written loop GEMMs lost to BLAS at every
  shape of the MNIST MLP at batch 16 (0.7-1.0x, 0.2x at 128x10).
- Pooling, ReLU and the loss are a single pass each; a ReLU after a conv or
  dense layer is fused into its output pass (``relu=True``), and a ReLU before a
  max-pool into the pool's backward (:func:`maxpool_backward` given ``x``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Reassociation lets the dW reductions vectorize; no flags that change NaN/inf handling.
_REDUCE = {"reassoc", "contract"}


# --- convolution (valid padding, stride 1) -------------------------------------------------


TAP_BLOCK_SPAN = 512
"""From this wide-row length on, the direct conv loops take up to 5 taps of a kernel row per pass
(:func:`_axpy_taps`, :func:`_dot_taps`, :func:`_scatter_taps`): the wide row is loaded and
stored once for several multiply-adds instead of once per tap. Measured with one thread against
one tap per pass: 0.6-0.85x the time on the first layers of LeNet (5x5, on MNIST and CIFAR-10)
and ``cnn`` (3x3), spans 668-892, float32 and float64. On shorter rows (``cnn``'s second
layer, 141) the extra slices' overlap checks cost more than they save (1.1-1.5x), so those,
and kernels narrower than 3, keep one tap per pass. Every call passes its tap count as a
literal, so that the other variants fold away: a tap count known only at run time kept the
one-tap dot product from vectorizing (3.7-4.6x slower)."""


@njit(nogil=True, cache=True, inline="always", fastmath={"contract"})
def _axpy_taps(row, x, at, w, w_at, taps, span):
    """``row[p] += sum_{t < taps} w[w_at + t] * x[at + t + p]`` for ``p < span``; ``taps`` is 1, 3 or 5."""
    if taps == 5:
        w0, w1, w2, w3, w4 = w[w_at], w[w_at + 1], w[w_at + 2], w[w_at + 3], w[w_at + 4]
        # slices, not x[at + p]: with offset indexing numba cannot prove the index non-negative
        # and the loop does not vectorize (8x slower here)
        s0, s1, s2 = x[at:at + span], x[at + 1:at + 1 + span], x[at + 2:at + 2 + span]
        s3, s4 = x[at + 3:at + 3 + span], x[at + 4:at + 4 + span]
        for p in range(span):
            row[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p] + w4 * s4[p]
    elif taps == 3:
        w0, w1, w2 = w[w_at], w[w_at + 1], w[w_at + 2]
        s0, s1, s2 = x[at:at + span], x[at + 1:at + 1 + span], x[at + 2:at + 2 + span]
        for p in range(span):
            row[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p]
    else:
        w0, s0 = w[w_at], x[at:at + span]
        for p in range(span):
            row[p] += w0 * s0[p]


@njit(nogil=True, cache=True, inline="always", fastmath=_REDUCE)
def _dot_taps(row, x, at, d_w, w_at, taps, span):
    """``d_w[w_at + t] += sum_p row[p] * x[at + t + p]`` for ``t < taps`` (1, 3 or 5), one pass over ``row``."""
    a0 = a1 = a2 = a3 = a4 = x.dtype.type(0)  # the data's precision: float32 stays vectorized
    if taps == 5:
        s0, s1, s2 = x[at:at + span], x[at + 1:at + 1 + span], x[at + 2:at + 2 + span]
        s3, s4 = x[at + 3:at + 3 + span], x[at + 4:at + 4 + span]
        for p in range(span):
            r = row[p]
            a0 += r * s0[p]
            a1 += r * s1[p]
            a2 += r * s2[p]
            a3 += r * s3[p]
            a4 += r * s4[p]
        d_w[w_at + 3] += a3
        d_w[w_at + 4] += a4
    elif taps == 3:
        s0, s1, s2 = x[at:at + span], x[at + 1:at + 1 + span], x[at + 2:at + 2 + span]
        for p in range(span):
            r = row[p]
            a0 += r * s0[p]
            a1 += r * s1[p]
            a2 += r * s2[p]
    else:
        s0 = x[at:at + span]
        for p in range(span):
            a0 += row[p] * s0[p]
    d_w[w_at] += a0
    if taps >= 3:
        d_w[w_at + 1] += a1
        d_w[w_at + 2] += a2


@njit(nogil=True, cache=True, inline="always", fastmath={"contract"})
def _scatter_taps(padded, pad, d_x, at, w, w_at, taps, length):
    """``d_x[at + q] += sum_{t < taps} w[w_at + t] * row[q - t]`` for ``q < length``, where
    ``row = padded[pad:]`` and the ``pad >= taps - 1`` values before it are zero."""
    target = d_x[at:at + length]
    if taps == 5:
        w0, w1, w2, w3, w4 = w[w_at], w[w_at + 1], w[w_at + 2], w[w_at + 3], w[w_at + 4]
        r0, r1 = padded[pad:pad + length], padded[pad - 1:pad - 1 + length]
        r2, r3 = padded[pad - 2:pad - 2 + length], padded[pad - 3:pad - 3 + length]
        r4 = padded[pad - 4:pad - 4 + length]
        for q in range(length):
            target[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q] + w3 * r3[q] + w4 * r4[q]
    elif taps == 3:
        w0, w1, w2 = w[w_at], w[w_at + 1], w[w_at + 2]
        r0, r1, r2 = padded[pad:pad + length], padded[pad - 1:pad - 1 + length], padded[pad - 2:pad - 2 + length]
        for q in range(length):
            target[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q]
    else:
        w0, r0 = w[w_at], padded[pad:pad + length]
        for q in range(length):
            target[q] += w0 * r0[q]


@njit(nogil=True, cache=True, inline="always", fastmath=_REDUCE)
def _backward_taps(row, padded, pad, x, w, d_w, d_x, at, w_at, taps, span, need_d_x):
    """One pass of ``taps`` taps of the backward: their weight gradients and, if ``need_d_x``,
    their share of the input gradient (``x[at + t + p]`` fed ``out[p]`` through tap ``t``)."""
    _dot_taps(row, x, at, d_w, w_at, taps, span)
    if need_d_x:
        _scatter_taps(padded, pad, d_x, at, w, w_at, taps, span + taps - 1)


@njit(nogil=True, cache=True, fastmath={"contract"})
def conv_forward(x, weights, bias, out, wide, batch, in_c, height, width, out_c, k, relu=False):
    """``out[b, f] = bias[f] + sum_c x[b, c] (*) weights[f, c]`` (cross-correlation, valid).

    ``x`` holds ``batch * in_c * height * width`` values, ``weights`` is
    ``(out_c, in_c, k, k)`` flattened, ``out`` receives ``batch * out_c * Ho * Wo``;
    ``wide`` is scratch of at least ``Ho * width`` values. With ``relu`` the output is
    ``max(out, 0)``: a following ReLU fused into the copy-out, saving a pass over the map.
    """
    zero = x.dtype.type(0)
    out_h, out_w = height - k + 1, width - k + 1
    span = (out_h - 1) * width + out_w  # the wide row's length
    in_size, out_size, plane = in_c * height * width, out_c * out_h * out_w, height * width
    row = wide[:span]
    for b in range(batch):
        for f in range(out_c):
            for p in range(span):
                row[p] = bias[f]
            for c in range(in_c):
                for di in range(k):
                    w_at = ((f * in_c + c) * k + di) * k
                    src = b * in_size + c * plane + di * width
                    if span < TAP_BLOCK_SPAN or k < 3:
                        for dj in range(k):
                            _axpy_taps(row, x, src + dj, weights, w_at + dj, 1, span)
                        continue
                    dj = 0
                    while dj < k:  # passes of 5, then 3, then 1 taps; each a literal, see above
                        if k - dj >= 5:
                            _axpy_taps(row, x, src + dj, weights, w_at + dj, 5, span)
                            dj += 5
                        elif k - dj >= 3:
                            _axpy_taps(row, x, src + dj, weights, w_at + dj, 3, span)
                            dj += 3
                        else:
                            _axpy_taps(row, x, src + dj, weights, w_at + dj, 1, span)
                            dj += 1
            o = b * out_size + f * out_h * out_w
            for i in range(out_h):
                source = row[i * width:i * width + out_w]
                target = out[o + i * out_w:o + (i + 1) * out_w]
                if relu:
                    for j in range(out_w):
                        target[j] = max(source[j], zero)
                else:
                    for j in range(out_w):  # loops, not slice assignments: those cost ~2x here
                        target[j] = source[j]


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def conv_backward(x, weights, d_out, d_weights, d_bias, d_x, wide, batch, in_c, height, width,
                  out_c, k, need_d_x):
    """Gradients of a conv layer: ``d_weights``, ``d_bias`` (overwritten) and, if ``need_d_x``, ``d_x``.

    ``d_out`` is d(loss)/d(out) for the whole batch; ``d_x`` (overwritten)
    receives d(loss)/d(x). ``wide`` is scratch of at least ``height * width`` values.
    """
    out_h, out_w = height - k + 1, width - k + 1
    span = (out_h - 1) * width + out_w
    pad = k - 1  # zeros before (and after) the wide row, read by _scatter_taps
    in_size, out_size, plane = in_c * height * width, out_c * out_h * out_w, height * width
    d_weights[:out_c * in_c * k * k] = 0.0
    d_bias[:out_c] = 0.0
    if need_d_x:
        d_x[:batch * in_size] = 0.0
    padded = wide[:span + 2 * pad]  # span + 2 * pad = Ho * width + k - 1 <= height * width
    padded[:] = 0.0  # the pads and the discarded columns stay zero, so they add nothing below
    row = padded[pad:pad + span]
    for b in range(batch):
        for f in range(out_c):
            o = b * out_size + f * out_h * out_w
            total = x.dtype.type(0)
            for i in range(out_h):
                values = d_out[o + i * out_w:o + (i + 1) * out_w]
                target = row[i * width:i * width + out_w]
                for j in range(out_w):
                    target[j] = values[j]
                    total += values[j]
            d_bias[f] += total
            for c in range(in_c):
                for di in range(k):
                    w_at = ((f * in_c + c) * k + di) * k
                    src = b * in_size + c * plane + di * width
                    if span < TAP_BLOCK_SPAN or k < 3:
                        for dj in range(k):
                            _backward_taps(row, padded, pad, x, weights, d_weights, d_x, src + dj,
                                           w_at + dj, 1, span, need_d_x)
                        continue
                    dj = 0
                    while dj < k:  # passes of 5, then 3, then 1 taps; each a literal, see above
                        if k - dj >= 5:
                            _backward_taps(row, padded, pad, x, weights, d_weights, d_x, src + dj,
                                           w_at + dj, 5, span, need_d_x)
                            dj += 5
                        elif k - dj >= 3:
                            _backward_taps(row, padded, pad, x, weights, d_weights, d_x, src + dj,
                                           w_at + dj, 3, span, need_d_x)
                            dj += 3
                        else:
                            _backward_taps(row, padded, pad, x, weights, d_weights, d_x, src + dj,
                                           w_at + dj, 1, span, need_d_x)
                            dj += 1


# --- 2x2 max pooling, stride 2 ---------------------------------------------------------------


@njit(nogil=True, cache=True)
def maxpool_forward(x, out, argmax, batch, channels, height, width):
    """Max over each 2x2 window (floor on odd sizes); ``argmax`` keeps the winner's index into ``x``."""
    out_h, out_w = height // 2, width // 2
    for bc in range(batch * channels):
        src = bc * height * width
        dst = bc * out_h * out_w
        for i in range(out_h):
            upper = src + 2 * i * width
            lower = upper + width
            # slices, not offset indexing: see conv_forward
            top, bottom = x[upper:upper + 2 * out_w], x[lower:lower + 2 * out_w]
            values = out[dst + i * out_w:dst + (i + 1) * out_w]
            winners = argmax[dst + i * out_w:dst + (i + 1) * out_w]
            for j in range(out_w):
                best, best_at = top[2 * j], upper + 2 * j
                if top[2 * j + 1] > best:
                    best, best_at = top[2 * j + 1], upper + 2 * j + 1
                if bottom[2 * j] > best:
                    best, best_at = bottom[2 * j], lower + 2 * j
                if bottom[2 * j + 1] > best:
                    best, best_at = bottom[2 * j + 1], lower + 2 * j + 1
                values[j] = best
                winners[j] = best_at


@njit(nogil=True, cache=True)
def maxpool_backward(d_out, argmax, d_x, n_out, n_in, x=None):
    """Route each output's gradient to the input that won its window; the rest get zero.

    Given the pool's input ``x`` (the output of a ReLU), a winner that is not positive gets
    zero too: the ReLU's backward fused in, so the full-size map is not passed over again.
    """
    for q in range(n_in):
        d_x[q] = 0.0
    if x is None:
        for q in range(n_out):
            d_x[argmax[q]] += d_out[q]
    else:
        for q in range(n_out):
            at = argmax[q]
            if x[at] > 0:
                d_x[at] += d_out[q]


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


# --- convolution as im2col + BLAS (for the wider layers) -------------------------------------

GEMM_TAPS = 64
GEMM_MAPS = 12
"""A conv layer with at least GEMM_TAPS taps per output (``in_c * k * k``) and GEMM_MAPS output
maps (the GEMM's rows) uses im2col + BLAS."""

GEMM_COLUMNS = 1024
"""Pixels (columns of the im2col matrix) per GEMM: enough samples per call for BLAS to run at
speed, few enough that the matrices stay in cache whatever the batch size."""


def prefers_gemm(in_c: int, k: int, out_c: int) -> bool:
    """Whether a conv layer runs faster as im2col + BLAS than as direct loops (see the top)."""
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
                        for j in range(out_w):  # see conv_forward
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


@njit(nogil=True, cache=True, fastmath=_REDUCE)
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
