"""asgdbench.workloads.network and the convolutional workloads: the whole network against
finite differences and a plain NumPy forward pass, the architectures' shapes, learning under
``seq`` and ``leashed:tp=inf``, and a multi-threaded run's bookkeeping on a CNN.

Workload tests read $ASGDBENCH_DATA and skip when their data set is not there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_watched
from test_layers import central_differences, numpy_conv, numpy_maxpool

from asgdbench.errors import DataError
from asgdbench.plugins.workloads import Workload, load_workload
from asgdbench.workloads import cifar10
from asgdbench.workloads.catalog import CNN, LENET
from asgdbench.workloads.network import Conv, Dense, MaxPool, Network, ReLU, gradient

SMALL = (Conv(3, 3), ReLU(), MaxPool(), Conv(4, 2), ReLU(), MaxPool(), Dense(6), ReLU(), Dense(3))
SMALL_INPUT = (2, 11, 10)  # odd sizes: 11x10 -> 9x8 -> 4x4 -> 3x3 -> 1x1
ROWS = np.array([3, 0, 7, 7, 5])  # a repeated row included


def numpy_forward(model: Network, params: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The network's logits written the obvious way, layer by layer, from its layer list."""
    h = X.reshape(X.shape[0], *model.input_shape)
    at = 0
    for layer in model.layers:
        if isinstance(layer, Conv):
            shape = (layer.channels, h.shape[1], layer.kernel, layer.kernel)
            w = params[at:at + np.prod(shape)].reshape(shape)
            at += w.size
            h = numpy_conv(h, w, params[at:at + layer.channels])
            at += layer.channels
        elif isinstance(layer, MaxPool):
            h = numpy_maxpool(h)
        elif isinstance(layer, ReLU):
            h = np.maximum(h, 0)
        else:
            h = h.reshape(h.shape[0], -1)
            w = params[at:at + h.shape[1] * layer.units].reshape(h.shape[1], layer.units)
            at += w.size
            h = h @ w + params[at:at + layer.units]
            at += layer.units
    assert at == params.size
    return h


def numpy_loss(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


@pytest.fixture
def small_problem():
    rng = np.random.default_rng(3)
    model = Network(SMALL_INPUT, SMALL, np.dtype(np.float64))
    params = model.init_params(0) + rng.normal(0, 0.05, model.n_params)  # nonzero biases
    X = rng.normal(size=(10, model.n_inputs))
    y = rng.integers(0, 3, 10)
    return model, params, X, y


def kernel_loss_and_gradient(model: Network, params, X, y, rows=ROWS):
    grad = np.full(model.n_params, 1e30, dtype=model.dtype)  # every entry must be written
    loss = gradient(params.astype(model.dtype), (X.astype(model.dtype), y, model.table), rows,
                    model.make_workspace(rows.size), grad)
    return float(loss), grad


@pytest.mark.parametrize("conv_by_gemm", [False, True])
def test_gradient_matches_central_differences(small_problem, conv_by_gemm):
    model, params, X, y = small_problem
    model = Network(model.input_shape, model.layers, model.dtype, conv_by_gemm=conv_by_gemm)
    _, grad = kernel_loss_and_gradient(model, params, X, y)
    numeric = central_differences(lambda: kernel_loss_and_gradient(model, params, X, y)[0], params)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_loss_and_evaluation_match_numpy(small_problem, dtype, rtol):
    model64, params, X, y = small_problem
    model = Network(model64.input_shape, model64.layers, np.dtype(dtype))
    loss, grad = kernel_loss_and_gradient(model, params, X, y)
    assert grad.dtype == dtype
    assert loss == pytest.approx(numpy_loss(numpy_forward(model, params, X[ROWS]), y[ROWS]), rel=rtol)
    logits = numpy_forward(model, params, X)
    # chunks of 4 rows: two full chunks, then a partial one
    test_loss, accuracy = model.evaluate(params.astype(dtype), X.astype(dtype), y, chunk=4)
    assert test_loss == pytest.approx(numpy_loss(logits, y), rel=rtol)
    assert accuracy == np.mean(logits.argmax(axis=1) == y)


def test_float32_gradient_agrees_with_float64(small_problem):
    model, params, X, y = small_problem
    _, grad64 = kernel_loss_and_gradient(model, params, X, y)
    _, grad32 = kernel_loss_and_gradient(Network(SMALL_INPUT, SMALL, np.dtype(np.float32)), params, X, y)
    np.testing.assert_allclose(grad32, grad64, rtol=1e-3, atol=1e-5 * np.abs(grad64).max())


def test_an_mlp_is_a_layer_list(numpy_mlp):
    """Dense/ReLU layers give the MLP's loss and gradient, in the MLP's parameter layout
    (``tests/test_mlp.py`` has the MLP's own tests)."""
    sizes = (8, 6, 5, 3)
    rng = np.random.default_rng(1)
    model = Network((sizes[0], 1, 1), (Dense(6), ReLU(), Dense(5), ReLU(), Dense(3)), np.dtype(np.float64))
    params = rng.normal(0, 0.5, model.n_params)
    X, y = rng.normal(size=(20, 8)), rng.integers(0, 3, 20)
    loss, grad = kernel_loss_and_gradient(model, params, X, y)
    expected_loss, expected_grad = numpy_mlp(sizes).loss_and_gradient(params, X[ROWS], y[ROWS])
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)


# -- the architectures ----------------------------------------------------------------------

@pytest.mark.parametrize("input_shape, layers, shapes, n_params", [
    ((1, 28, 28), CNN, ["4x26x26", "4x13x13", "8x11x11", "8x5x5", "128x1x1", "10x1x1"],
     (4 * 9 + 4) + (8 * 4 * 9 + 8) + (200 * 128 + 128) + (128 * 10 + 10)),
    ((1, 28, 28), LENET, ["6x24x24", "6x12x12", "16x8x8", "16x4x4", "120x1x1", "10x1x1"],
     (6 * 25 + 6) + (16 * 6 * 25 + 16) + (256 * 120 + 120) + (120 * 10 + 10)),
    ((3, 32, 32), LENET, ["6x28x28", "6x14x14", "16x10x10", "16x5x5", "120x1x1", "10x1x1"],
     (6 * 75 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 10 + 10)),
], ids=["cnn", "lenet-28x28x1", "lenet-32x32x3"])
def test_architectures_have_the_frameworks_shapes(input_shape, layers, shapes, n_params):
    model = Network(input_shape, layers)
    outputs = [line.rsplit(" ", 1)[1] for line, layer in zip(model.describe(), layers)
               if not isinstance(layer, ReLU)]
    assert outputs == shapes
    assert model.n_params == n_params


@pytest.mark.parametrize("layers, fragment", [
    ((Conv(2, 5), Dense(3)), "does not fit"),
    ((MaxPool(), MaxPool(), MaxPool(), Dense(3)), "cannot pool"),
    ((Conv(2, 3),), "ends with a Dense"),
])
def test_impossible_architectures_are_refused(layers, fragment):
    with pytest.raises(ValueError, match=fragment):
        Network((1, 4, 4), layers)


# -- the workloads --------------------------------------------------------------------------

WORKLOADS = ["cnn-mnist", "cnn-fashion", "lenet-mnist", "lenet-fashion", "lenet-cifar10",
             "mlp-fashion"]
LEARNING_UPDATES = 200
CHANCE_ACCURACY = 0.1
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 classes


@pytest.fixture(scope="module")
def workloads():
    """Each workload loaded once for the module; a missing data set skips its tests."""
    cache: dict[str, Workload] = {}

    def get(name: str) -> Workload:
        if name not in cache:
            try:
                cache[name] = load_workload(name)
            except DataError as error:
                pytest.skip(f"{name}: {error}")
        return cache[name]

    return get


@pytest.mark.parametrize("strategy, threads", [("seq", 1), ("leashed:tp=inf", 4)])
@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_learns(workloads, name, strategy, threads):
    """A few hundred updates at the workload's defaults take the held-out loss and accuracy
    far from chance (the test set is evaluated on the final vector, not read from the loss log)."""
    result = run_watched(workloads(name), strategy, threads, max_updates=LEARNING_UPDATES,
                         target_loss=None, max_time=None)
    assert result.status == "budget" and result.updates_applied == LEARNING_UPDATES
    assert result.test_loss < 0.8 * CHANCE_LOSS
    assert result.test_accuracy > 3 * CHANCE_ACCURACY


@pytest.mark.parametrize("strategy", ["lock", "leashed:tp=inf"])
def test_threads_share_a_cnn_without_losing_updates(workloads, strategy):
    """The concurrency bookkeeping on a real CNN: every gradient is applied or dropped, none vanishes."""
    budget = 1000
    result = run_watched(workloads("cnn-mnist"), strategy, 8, max_updates=budget,
                         target_loss=None, max_time=None)
    assert result.status == "budget"
    assert result.updates_applied == budget
    assert result.updates_applied + result.gradients_dropped == result.gradients_computed
    assert sum(result.per_thread_updates) == result.updates_applied
    assert np.isfinite(result.final_params).all()
    assert result.test_loss < 0.5 * CHANCE_LOSS  # and it learned


def test_lenet_cifar10_trains_on_files_in_the_cifar10_layout(tmp_path):
    """The CIFAR-10 workload end to end without the real data: a few random images in the
    binary layout, which LeNet must overfit (training loss far below its start)."""
    folder = tmp_path / "cifar10" / cifar10.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for name in (*cifar10.CIFAR10_TRAIN, cifar10.CIFAR10_TEST):
        records = rng.integers(0, 256, (4, 1 + 3 * 32 * 32), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, 4)
        (folder / name).write_bytes(records.tobytes())
    workload = load_workload("lenet-cifar10", data_dir=str(tmp_path))
    assert workload.n_samples == 20 and workload.train_data[0].shape == (20, 3072)
    start = workload.training_loss(workload.init_params(0))
    result = run_watched(workload, "seq", 1, batch_size=4, lr=0.05, max_updates=400,
                         target_loss=None, max_time=None)
    assert result.status == "budget"
    assert workload.training_loss(result.final_params) < 0.3 * start


@pytest.mark.slow
@pytest.mark.parametrize("name", WORKLOADS)
def test_defaults_reach_the_target_with_two_threads(workloads, name):
    """The tuned defaults: 2 threads reach the target loss within half of max_time."""
    workload = workloads(name)
    result = run_watched(workload, "lock", 2, watchdog_s=workload.defaults.max_time + 120)
    assert result.status == "converged"
    assert result.time_to_target_s < workload.defaults.max_time / 2
