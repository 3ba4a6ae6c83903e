"""The MLP as a layer list (``network.mlp_layers``): its kernels against finite differences and
plain NumPy, its parameter layout and initialisation, and the MLP workloads built from it."""

from __future__ import annotations

import numpy as np
import pytest

from asgdbench.plugins.workloads import load_workload
from asgdbench.workloads.network import Dense, Network, ReLU, gradient, mlp_layers

SIZES = (8, 6, 5, 3)
BATCH = 7
N_SAMPLES = 20
ROWS = np.array([3, 0, 19, 7, 7, 12, 5])  # a repeated row included


def mlp(sizes: tuple[int, ...], dtype=np.float64) -> Network:
    return Network((sizes[0], 1, 1), mlp_layers(sizes[1:-1], sizes[-1]), np.dtype(dtype))


@pytest.fixture
def problem():
    """Random float64 parameters (biases included) and data for a small MLP."""
    rng = np.random.default_rng(42)
    model = mlp(SIZES)
    params = rng.normal(0.0, 0.5, model.n_params)
    X = rng.normal(0.0, 1.0, (N_SAMPLES, SIZES[0]))
    y = rng.integers(0, SIZES[-1], N_SAMPLES)
    return model, params, X, y


def kernel_loss_and_gradient(model: Network, params: np.ndarray, X: np.ndarray,
                             y: np.ndarray) -> tuple[float, np.ndarray]:
    """The numba kernel on ``ROWS``, into a gradient buffer full of garbage first."""
    grad = np.full(model.n_params, 1e30, dtype=model.dtype)
    loss = gradient(params.astype(model.dtype), (X.astype(model.dtype), y, model.table),
                    ROWS, model.make_workspace(BATCH), grad)
    return float(loss), grad


def test_the_layer_list_is_dense_relu_then_dense():
    assert mlp_layers((6, 5), 3) == (Dense(6), ReLU(), Dense(5), ReLU(), Dense(3))
    assert mlp_layers((), 3) == (Dense(3),)


def test_n_params_counts_weights_and_biases():
    assert mlp(SIZES).n_params == 8 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3


def test_init_is_the_classic_mlp_layout():
    """Per layer W (fan_in x fan_out) drawn N(0, 2/fan_in), then zero b, from one seeded stream:
    the layout and draws the MLP defaults were tuned with."""
    rng = np.random.default_rng(4)
    expected = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        expected += [rng.normal(0.0, np.sqrt(2.0 / fan_in), fan_in * fan_out), np.zeros(fan_out)]
    np.testing.assert_array_equal(mlp(SIZES).init_params(4), np.concatenate(expected))


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
    loss, grad = kernel_loss_and_gradient(mlp(SIZES, dtype), params, X, y)
    expected_loss, expected_grad = numpy_mlp(SIZES).loss_and_gradient(params, X[ROWS], y[ROWS])
    assert grad.dtype == dtype
    assert loss == pytest.approx(expected_loss, rel=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol,
                               atol=rtol * np.abs(expected_grad).max())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_evaluate_matches_numpy(problem, numpy_mlp, dtype, rtol):
    _, params, X, y = problem
    model = mlp(SIZES, dtype)
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


def test_an_mlp_workload_describes_its_layers(numpy_mlp):
    """mlp-digits is the layer list of its sizes, and its kernel is the network's."""
    workload = load_workload("mlp-digits", dtype="float64")
    sizes = workload.description["layer_sizes"]
    assert sizes == [64, 64, 64, 10]
    assert workload.gradient is gradient and workload.n_params == mlp(tuple(sizes)).n_params
    X, y, _ = workload.train_data
    params = workload.init_params(1)
    grad = np.empty_like(params)
    loss = workload.gradient(params, workload.train_data, ROWS, workload.make_workspace(BATCH), grad)
    expected_loss, expected_grad = numpy_mlp(sizes).loss_and_gradient(params, X[ROWS], y[ROWS])
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)
