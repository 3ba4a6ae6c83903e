"""Convolution by direct loops (valid padding, stride 1): the narrow layers' kernels.

The loops run over a "wide row": output pixel ``(i, j)`` is computed at flat index
``i * W + j`` of the input's width ``W``, so each (channel, tap) step is one long contiguous
multiply-add over ``(Ho-1)*W+Wo`` elements that the compiler vectorizes, instead of ``Ho``
short rows of ``Wo``. The ``K-1`` columns per row that fall off the valid window are computed
and discarded (forward) or held at zero (backward). On long rows a pass takes up to five taps
of a kernel row at once (:data:`TAP_BLOCK_SPAN`). :mod:`.layers` says when a layer uses these
loops rather than :mod:`.layer_conv_gemm`.
"""

from __future__ import annotations

from numba import njit

REDUCE = {"reassoc", "contract"}
"""fastmath flags of the kernels that sum weight gradients: reassociation lets those reductions
vectorize; no flag that changes NaN or inf handling."""

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


@njit(nogil=True, cache=True, inline="always", fastmath=REDUCE)
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


@njit(nogil=True, cache=True, inline="always", fastmath=REDUCE)
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


@njit(nogil=True, cache=True, fastmath=REDUCE)
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

