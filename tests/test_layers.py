"""asgdbench.workloads.layers: each kernel's forward against plain NumPy, its backward against
central finite differences (float64), and float32 against float64."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from asgdbench.workloads import layers as L

RNG = np.random.default_rng(7)


# -- plain NumPy references ---------------------------------------------------------------

def numpy_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation, x (B, C, H, W), w (F, C, K, K): the textbook sum over windows."""
    k = w.shape[-1]
    out_h, out_w = x.shape[2] - k + 1, x.shape[3] - k + 1
    out = np.empty((x.shape[0], w.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i:i + k, j:j + k]
            out[:, :, i, j] = np.einsum("bckl,fckl->bf", window, w) + b
    return out


def numpy_maxpool(x: np.ndarray) -> np.ndarray:
    """2x2 max pooling, stride 2, odd trailing rows and columns dropped."""
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    x = x[:, :, :h, :w]
    return x.reshape(x.shape[0], x.shape[1], h // 2, 2, w // 2, 2).max(axis=(3, 5))


def central_differences(f: Callable[[], float], values: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d values, where ``f`` reads ``values`` (perturbed in place, then restored)."""
    numeric = np.empty(values.size)
    flat = values.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = f()
        flat[i] = saved - eps
        down = f()
        flat[i] = saved
        numeric[i] = (up - down) / (2 * eps)
    return numeric.reshape(values.shape)


# -- convolution ------------------------------------------------------------------------------

CONV_SHAPES = [  # batch, in_c, height, width, out_c, k
    (2, 1, 7, 7, 3, 3),  # an odd number of output maps
    (2, 2, 6, 6, 1, 3),  # a single one
    (3, 2, 6, 8, 4, 3),  # not square
    (2, 3, 9, 9, 2, 5),
    (1, 2, 4, 5, 3, 1),  # 1x1 kernel
    (2, 1, 3, 3, 2, 3),  # kernel as large as the input
    # wide rows of at least layers.TAP_BLOCK_SPAN: the direct loops take several taps per pass
    (1, 1, 28, 28, 2, 5),  # one pass of 5 taps per kernel row (LeNet's first layer)
    (1, 2, 23, 26, 2, 3),  # one pass of 3, two channels
    (1, 1, 28, 28, 1, 7),  # 5, then 1, then 1
    (1, 1, 28, 28, 1, 4),  # 3, then 1
    (2, 2, 28, 28, 3, 9),  # 5, then 3, then 1; two samples, two channels
]


def test_conv_shapes_cover_both_direct_loop_kinds():
    spans = [(h - k) * w + w - k + 1 for _, _, h, w, _, k in CONV_SHAPES]
    assert min(spans) < L.TAP_BLOCK_SPAN <= max(spans)


def conv_problem(shape, dtype=np.float64):
    """Inputs, weights and biases for a conv layer of ``shape``, the same whatever the test order."""
    batch, in_c, height, width, out_c, k = shape
    rng = np.random.default_rng(list(shape))
    x = rng.normal(size=(batch, in_c, height, width)).astype(dtype)
    w = rng.normal(size=(out_c, in_c, k, k)).astype(dtype)
    b = rng.normal(size=out_c).astype(dtype)
    return x, w, b


CONV_KERNELS = {  # how: (forward, backward, scratch size)
    "direct": (L.conv_forward, L.conv_backward, lambda c, h, w, f, k: h * w),
    "gemm": (L.conv_forward_gemm, L.conv_backward_gemm, L.gemm_scratch_size),
}


def run_conv(x, w, b, how="direct"):
    batch, in_c, height, width = x.shape
    out_c, _, k, _ = w.shape
    forward, _, scratch_size = CONV_KERNELS[how]
    out = np.full((batch, out_c, height - k + 1, width - k + 1), np.nan, dtype=x.dtype)
    scratch = np.full(scratch_size(in_c, height, width, out_c, k), np.nan, dtype=x.dtype)
    forward(x.ravel(), w.ravel(), b, out.reshape(-1), scratch, batch, in_c, height, width, out_c, k)
    return out


def run_conv_backward(x, w, d_out, need_d_x=True, how="direct"):
    batch, in_c, height, width = x.shape
    out_c, _, k, _ = w.shape
    _, backward, scratch_size = CONV_KERNELS[how]
    d_w = np.full(w.shape, np.nan, dtype=x.dtype)
    d_b = np.full(out_c, np.nan, dtype=x.dtype)
    d_x = np.full(x.shape, np.nan, dtype=x.dtype)
    scratch = np.full(scratch_size(in_c, height, width, out_c, k), np.nan, dtype=x.dtype)
    backward(x.reshape(-1), w.reshape(-1), d_out.reshape(-1), d_w.reshape(-1), d_b,
             d_x.reshape(-1), scratch, batch, in_c, height, width, out_c, k, need_d_x)
    return d_w, d_b, d_x


@pytest.mark.parametrize("how", CONV_KERNELS)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_forward_matches_numpy(shape, how):
    x, w, b = conv_problem(shape)
    np.testing.assert_allclose(run_conv(x, w, b, how), numpy_conv(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("how", CONV_KERNELS)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_backward_matches_central_differences(shape, how):
    x, w, b = conv_problem(shape)
    probe = RNG.normal(size=numpy_conv(x, w, b).shape)  # loss = sum(out * probe): d_out = probe

    def loss() -> float:
        return float(np.sum(run_conv(x, w, b, how) * probe))

    d_w, d_b, d_x = run_conv_backward(x, w, probe, how=how)
    for analytic, values in ((d_w, w), (d_b, b), (d_x, x)):
        # central differences are exact to O(eps^2) but lose ~1e-16 * |loss| / eps to rounding
        np.testing.assert_allclose(analytic, central_differences(loss, values), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("how", CONV_KERNELS)
def test_conv_backward_without_input_gradient_leaves_it_alone(how):
    x, w, b = conv_problem(CONV_SHAPES[1])
    probe = RNG.normal(size=numpy_conv(x, w, b).shape)
    d_w, d_b, d_x = run_conv_backward(x, w, probe, need_d_x=False, how=how)
    expected_w, expected_b, _ = run_conv_backward(x, w, probe, how=how)
    np.testing.assert_array_equal(d_w, expected_w)
    np.testing.assert_array_equal(d_b, expected_b)
    assert np.isnan(d_x).all()


def test_gemm_conv_spans_several_chunks():
    """A batch larger than one GEMM's chunk of samples, ending in a partial chunk."""
    shape = (2, 6, 12, 12, 16, 5)
    chunk = L.gemm_chunk(*shape[1:4], shape[5])
    shape = (2 * chunk + 3, *shape[1:])
    x, w, b = conv_problem(shape)
    probe = RNG.normal(size=numpy_conv(x, w, b).shape)
    np.testing.assert_allclose(run_conv(x, w, b, "gemm"), numpy_conv(x, w, b), rtol=1e-12, atol=1e-12)
    for got, want in zip(run_conv_backward(x, w, probe, how="gemm"), run_conv_backward(x, w, probe)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_gemm_backward_reads_the_columns_the_forward_kept():
    """With ``kept``, the forward leaves its im2col matrices there and the backward uses them
    instead of building them again: the same gradients, bit for bit, over several chunks."""
    shape = (2, 6, 12, 12, 16, 5)
    chunk = L.gemm_chunk(*shape[1:4], shape[5])
    batch, in_c, height, width, out_c, k = shape = (2 * chunk + 3, *shape[1:])
    x, w, b = conv_problem(shape)
    probe = RNG.normal(size=numpy_conv(x, w, b).shape)
    kept = np.full(batch * L.kept_columns_size(in_c, height, width, k), np.nan)
    scratch = np.full(L.gemm_scratch_size(in_c, height, width, out_c, k), np.nan)
    out = np.empty(probe.size)
    L.conv_forward_gemm(x.ravel(), w.ravel(), b, out, scratch, batch, in_c, height, width, out_c,
                        k, False, kept)
    np.testing.assert_array_equal(out.reshape(probe.shape), run_conv(x, w, b, "gemm"))
    assert not np.isnan(kept).any()  # every chunk's columns were built there
    scratch[:] = np.nan  # nothing left over in scratch that the backward could lean on
    d_w, d_b, d_x = np.empty(w.size), np.empty(out_c), np.empty(x.size)
    L.conv_backward_gemm(x.ravel(), w.ravel(), probe.ravel(), d_w, d_b, d_x, scratch, batch, in_c,
                         height, width, out_c, k, True, kept)
    for got, want in zip((d_w, d_b, d_x), run_conv_backward(x, w, probe, how="gemm")):
        np.testing.assert_array_equal(got, want.ravel())
    # the weight gradient comes from the kept columns, not from x read again
    unreadable = np.full(x.size, np.nan)
    L.conv_backward_gemm(unreadable, w.ravel(), probe.ravel(), d_w, d_b, d_x, scratch, batch,
                         in_c, height, width, out_c, k, False, kept)
    np.testing.assert_array_equal(d_w, run_conv_backward(x, w, probe, how="gemm")[0].ravel())


@pytest.mark.parametrize("how", CONV_KERNELS)
def test_conv_float32_agrees_with_float64(how):
    shape = (4, 4, 13, 13, 8, 3)
    x, w, b = conv_problem(shape)
    probe = RNG.normal(size=numpy_conv(x, w, b).shape)
    single = [a.astype(np.float32) for a in (x, w, b, probe)]
    np.testing.assert_allclose(run_conv(*single[:3], how), run_conv(x, w, b), rtol=1e-4, atol=1e-4)
    for got, want in zip(run_conv_backward(single[0], single[1], single[3], how=how),
                         run_conv_backward(x, w, probe)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("how", CONV_KERNELS)
def test_conv_forward_with_fused_relu_is_relu_of_the_output(how):
    """The ``relu`` flag (a following ReLU fused into the copy-out) gives max(conv, 0)."""
    x, w, b = conv_problem(CONV_SHAPES[1])
    batch, in_c, height, width = x.shape
    out_c, _, k, _ = w.shape
    forward, _, scratch_size = CONV_KERNELS[how]
    out = np.full((batch, out_c, height - k + 1, width - k + 1), np.nan)
    scratch = np.full(scratch_size(in_c, height, width, out_c, k), np.nan)
    forward(x.ravel(), w.ravel(), b, out.reshape(-1), scratch, batch, in_c, height, width, out_c,
            k, True)
    expected = np.maximum(numpy_conv(x, w, b), 0)
    assert (expected == 0).any() and (expected > 0).any()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


# -- max pooling --------------------------------------------------------------------------

POOL_SHAPES = [(2, 3, 6, 6), (1, 2, 5, 7), (2, 1, 2, 3)]  # odd sizes are floored


def run_pool(x):
    batch, channels, height, width = x.shape
    out = np.full((batch, channels, height // 2, width // 2), np.nan)
    argmax = np.full(out.size, -1, dtype=np.int64)
    L.maxpool_forward(x.reshape(-1), out.reshape(-1), argmax, batch, channels, height, width)
    return out, argmax


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_maxpool_forward_matches_numpy(shape):
    x = RNG.normal(size=shape)
    out, argmax = run_pool(x)
    np.testing.assert_array_equal(out, numpy_maxpool(x))
    np.testing.assert_array_equal(x.reshape(-1)[argmax], out.reshape(-1))  # arg-max points at the max


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_maxpool_backward_matches_central_differences(shape):
    x = RNG.normal(size=shape)  # distinct values: the max is differentiable there
    out, argmax = run_pool(x)
    probe = RNG.normal(size=out.shape)
    d_x = np.full(x.shape, np.nan)
    L.maxpool_backward(probe.reshape(-1), argmax, d_x.reshape(-1), out.size, x.size)
    numeric = central_differences(lambda: float(np.sum(run_pool(x)[0] * probe)), x)
    np.testing.assert_allclose(d_x, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_maxpool_backward_given_its_relu_input_is_relu_backward_after_it(shape):
    """Passing the pool's input (a ReLU's output) fuses the ReLU's backward: the same deltas
    as the pool's backward followed by :func:`relu_backward` on the full map."""
    x = np.maximum(RNG.normal(size=shape), 0)  # a ReLU's output
    x[0, 0, :2, :2] = 0  # one window whose winner is not positive
    out, argmax = run_pool(x)
    probe = RNG.normal(size=out.shape)
    expected = np.full(x.shape, np.nan)
    L.maxpool_backward(probe.reshape(-1), argmax, expected.reshape(-1), out.size, x.size)
    L.relu_backward(x.reshape(-1), expected.reshape(-1), x.size)
    fused = np.full(x.shape, np.nan)
    L.maxpool_backward(probe.reshape(-1), argmax, fused.reshape(-1), out.size, x.size, x.reshape(-1))
    assert (out == 0).any()  # some window's winner is not positive
    np.testing.assert_array_equal(fused, expected)


# -- ReLU -------------------------------------------------------------------------------------

def test_relu_forward_and_backward():
    x = RNG.normal(size=50)
    out = x.copy()
    L.relu_forward(out, out.size)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    d = RNG.normal(size=50)
    expected = d * (x > 0)
    L.relu_backward(out, d, d.size)
    np.testing.assert_array_equal(d, expected)


# -- dense and the loss ---------------------------------------------------------------------

@pytest.mark.parametrize("fan_out", [4, 40])  # 40: wide enough for the transposed forward
@pytest.mark.parametrize("scratch_size", [0, 5 * 40], ids=["plain", "transposed"])
def test_dense_forward_matches_numpy_and_backward_matches_central_differences(fan_out, scratch_size):
    """Both orientations (``x @ W`` and ``(W^T x^T)^T``, chosen by batch, width and scratch)."""
    batch, fan_in = 5, 7
    x, w, b = RNG.normal(size=(batch, fan_in)), RNG.normal(size=(fan_in, fan_out)), RNG.normal(size=fan_out)
    probe = RNG.normal(size=(batch, fan_out))
    scratch = np.full(scratch_size, np.nan)

    def forward() -> np.ndarray:
        out = np.full(batch * fan_out, np.nan)
        L.dense_forward(x.reshape(-1), w.reshape(-1), b, out, scratch, batch, fan_in, fan_out)
        return out.reshape(batch, fan_out)

    np.testing.assert_allclose(forward(), x @ w + b, rtol=1e-12)
    d_w, d_b, d_x = np.full(w.shape, np.nan), np.full(fan_out, np.nan), np.full(x.shape, np.nan)
    L.dense_backward(x.reshape(-1), w.reshape(-1), probe.reshape(-1), d_w.reshape(-1), d_b,
                     d_x.reshape(-1), scratch, batch, fan_in, fan_out, True)
    loss = lambda: float(np.sum(forward() * probe))  # noqa: E731
    for analytic, values in ((d_w, w), (d_b, b), (d_x, x)):
        np.testing.assert_allclose(analytic, central_differences(loss, values), rtol=1e-6, atol=1e-8)


def test_softmax_cross_entropy_matches_numpy_and_central_differences():
    logits = RNG.normal(size=(6, 5)) * 3
    labels = np.array([0, 4, 2, 2, 1, 3])
    delta = np.full(logits.shape, np.nan)
    loss = L.softmax_cross_entropy(logits, labels, delta)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-log_p[np.arange(6), labels].mean(), rel=1e-12)
    scratch = np.empty_like(logits)
    numeric = central_differences(lambda: L.softmax_cross_entropy(logits, labels, scratch), logits)
    np.testing.assert_allclose(delta, numeric, rtol=1e-6, atol=1e-9)
    total, hits = L.loss_and_hits(logits, labels)
    assert total == pytest.approx(6 * loss, rel=1e-12)
    assert hits == np.sum(logits.argmax(axis=1) == labels)
