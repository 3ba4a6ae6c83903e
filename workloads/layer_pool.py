"""2x2 max pooling, stride 2: forward keeps each window's winner, backward routes to it."""

from __future__ import annotations

from numba import njit


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
            # slices, not offset indexing: see layer_conv.conv_forward
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

