"""asgdbench.workloads.mlp: the numba kernels against finite differences and plain NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from asgdbench.workloads import mlp

SIZES = (8, 6, 5, 3)
BATCH = 7
N_SAMPLES = 20
ROWS = np.array([3, 0, 19, 7, 7, 12, 5])  # a repeated row included


@pytest.fixture
def problem():
    """Random float64 parameters (biases included) and data for a small MLP."""
    rng = np.random.default_rng(42)
    model = mlp.MLP(SIZES, np.dtype(np.float64))
    params = rng.normal(0.0, 0.5, model.n_params)
    X = rng.normal(0.0, 1.0, (N_SAMPLES, SIZES[0]))
    y = rng.integers(0, SIZES[-1], N_SAMPLES)
    return model, params, X, y


def kernel_loss_and_gradient(model: mlp.MLP, params: np.ndarray, X: np.ndarray,
                             y: np.ndarray) -> tuple[float, np.ndarray]:
    """The numba kernel on ``ROWS``, into a gradient buffer full of garbage first."""
    grad = np.full(model.n_params, 1e30, dtype=model.dtype)
    loss = mlp.gradient(params.astype(model.dtype), (X.astype(model.dtype), y, model.layers),
                        ROWS, model.make_workspace(BATCH), grad)
    return float(loss), grad


def test_n_params_counts_weights_and_biases():
    assert mlp.MLP(SIZES).n_params == 8 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3


def test_gradient_matches_central_differences(problem):
    model, params, X, y = problem
    _, grad = kernel_loss_and_gradient(model, params, X, y)
    eps = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        step = np.zeros_like(params)
        step[i] = eps
        up, _ = kernel_loss_and_gradient(model, params + step, X, y)
        down, _ = kernel_loss_and_gradient(model, params - step, X, y)
        numeric[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_loss_and_gradient_match_numpy(problem, numpy_mlp, dtype, rtol):
    _, params, X, y = problem
    loss, grad = kernel_loss_and_gradient(mlp.MLP(SIZES, np.dtype(dtype)), params, X, y)
    expected_loss, expected_grad = numpy_mlp(SIZES).loss_and_gradient(params, X[ROWS], y[ROWS])
    assert grad.dtype == dtype
    assert loss == pytest.approx(expected_loss, rel=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol,
                               atol=rtol * np.abs(expected_grad).max())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_evaluate_matches_numpy(problem, numpy_mlp, dtype, rtol):
    _, params, X, y = problem
    model = mlp.MLP(SIZES, np.dtype(dtype))
    # chunks of 8 rows: two full chunks, then a partial one
    loss, accuracy = model.evaluate(params.astype(dtype), X.astype(dtype), y, chunk=8)
    expected_loss, expected_accuracy = numpy_mlp(SIZES).loss_and_accuracy(params, X, y)
    assert loss == pytest.approx(expected_loss, rel=rtol)
    assert accuracy == expected_accuracy


def test_init_params_are_seeded(problem):
    model = problem[0]
    first, again, other = (model.init_params(seed) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (model.n_params,) and first.dtype == model.dtype
