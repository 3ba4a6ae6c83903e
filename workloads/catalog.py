"""The named workloads: model, data set and tuned defaults.

Defaults keep small minibatches on purpose: synchronization matters most when
a gradient costs about as much as a publish, and large batches would hide it.
The convolutional defaults were tuned so that 2 threads on 2 cores reach the
target in well under half of ``max_time`` (see README.md, "Workloads"), except
``lenet-cifar10``'s: CIFAR-10 could not be downloaded where they were set, so
they are a guess (lr 0.02, batch 16, loss 1.5, 300 s), untested on the real data.
Every MLP is the layer list of :func:`.network.mlp_layers`, trained by the same
:func:`.network.gradient` as the convolutional networks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from asgdbench.plugins.workloads import Defaults, Workload, WorkloadSpec, register_workload
from asgdbench.workloads import datasets
from asgdbench.workloads.architecture import (
    Conv,
    Dense,
    Layer,
    MaxPool,
    ReLU,
    architecture_name,
    layer_shapes,
    mlp_layers,
    spatial,
)
from asgdbench.workloads.network import Network
from asgdbench.workloads.network import gradient as network_gradient

_TRAINING_LOSS_SAMPLES = 10_000  # enough for a stable divergence baseline, and quick

CNN: tuple[Layer, ...] = (Conv(4, 3), ReLU(), MaxPool(), Conv(8, 3), ReLU(), MaxPool(),
                          Dense(128), ReLU(), Dense(10))
"""The authors' framework's ``cnn``: on 28x28 input, 26 -> 13 -> 11 -> 5, then 200-128-10."""

LENET: tuple[Layer, ...] = (Conv(6, 5), ReLU(), MaxPool(), Conv(16, 5), ReLU(), MaxPool(),
                            Dense(120), ReLU(), Dense(10))
"""The authors' framework's ``lenet``: 28x28x1 -> 24 -> 12 -> 8 -> 4 (256 features), or
32x32x3 -> 28 -> 14 -> 10 -> 5 (400 features), then 120-10."""


def _load_data(dataset: str, data_dir: str | None, dtype: np.dtype,
               options: dict[str, Any]) -> datasets.Dataset:
    """The data set, already in the model's dtype where the loader can do that (the file sets)."""
    loader = datasets.DATASETS[dataset]
    if dataset in datasets.FILE_DATASETS:
        return loader(data_dir, dtype=dtype, **options)
    return loader(**options)


def _workload(spec: WorkloadSpec, model: Any, data: datasets.Dataset, dtype: np.dtype,
              gradient: Any, model_data: Any, init: str, description: dict[str, Any]) -> Workload:
    """What every model workload shares: data in the model's dtype, evaluation, description."""
    X_train = np.ascontiguousarray(data.X_train, dtype=dtype)
    X_test = np.ascontiguousarray(data.X_test, dtype=dtype)
    head = slice(0, _TRAINING_LOSS_SAMPLES)

    def evaluate(params: np.ndarray) -> dict[str, float]:
        loss, accuracy = model.evaluate(params, X_test, data.y_test)
        return {"test_loss": loss, "test_accuracy": accuracy}

    return Workload(
        name=spec.name,
        gradient=gradient,
        train_data=(X_train, data.y_train, model_data),
        n_samples=X_train.shape[0],
        n_params=model.n_params,
        dtype=dtype,
        init_params=partial(model.init_params, init=init),
        make_workspace=model.make_workspace,
        evaluate=evaluate,
        training_loss=lambda params: model.evaluate(params, X_train[head], data.y_train[head])[0],
        defaults=spec.defaults,
        description={**description, "dataset": data.name, "dtype": dtype.name,
                     "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0]),
                     "init": init},
    )


def build_mlp(spec: WorkloadSpec, *, data_dir: str | None, dtype: np.dtype,
              dataset: str, hidden: tuple[int, ...], init: str = "he",
              **dataset_options) -> Workload:
    """An MLP workload on one of :data:`datasets.DATASETS`: the layer list ``Dense, ReLU, ..., Dense``."""
    data = _load_data(dataset, data_dir, dtype, dataset_options)
    model = Network((data.n_features, 1, 1), mlp_layers(hidden, data.n_classes), dtype)
    sizes = [data.n_features, *hidden, data.n_classes]
    return _workload(spec, model, data, dtype, network_gradient, model.table, init,
                     {"model": "mlp", "layer_sizes": sizes, "layers": model.describe(),
                      "n_params": model.n_params})


def build_network(spec: WorkloadSpec, *, data_dir: str | None, dtype: np.dtype, dataset: str,
                  layers: tuple[Layer, ...], architecture: str | None = None,
                  init: str = "he") -> Workload:
    """A network workload: the layer list on an image data set (or, with no Conv or MaxPool,
    on any). ``architecture`` only names it in the result's description (``cnn``, ``lenet``);
    by default the name is derived from the layers (:func:`.network.architecture_name`)."""
    data = _load_data(dataset, data_dir, dtype, {})
    input_shape = data.image_shape or (data.n_features, 1, 1)
    model = Network(input_shape, layers, dtype)
    return _workload(spec, model, data, dtype, network_gradient, model.table, init,
                     {"model": architecture or architecture_name(layers),
                      "input_shape": list(input_shape), "layers": model.describe(),
                      "n_params": model.n_params})


def _dataset_problem(dataset: Any) -> str | None:
    if dataset not in datasets.DATASETS:
        return (f"unknown data set {dataset!r} (valid: {', '.join(datasets.DATASETS)})")
    return None


def network_problem(*, dataset: Any = None, layers: Any = (), init: str = "he",
                    architecture: Any = None, **unknown: Any) -> str | None:
    """What :func:`build_network` would fail on with these options, found without loading the
    data: an unknown data set, a layer list that is not one, conv or pool layers on a data
    set of plain feature vectors, a layer that does not fit its input."""
    if unknown:
        return f"build_network takes no option {', '.join(map(repr, sorted(unknown)))}"
    if init not in ("he", "small"):
        return f"unknown init {init!r} (valid: he, small)"
    problem = _dataset_problem(dataset)
    if problem:
        return problem
    if not isinstance(layers, tuple) or not all(isinstance(layer, (Conv, MaxPool, ReLU, Dense))
                                                for layer in layers):
        return "layers must be a tuple of Conv, MaxPool, ReLU and Dense"
    image_shape = datasets.IMAGE_SHAPES[dataset]
    if image_shape is None and spatial(layers):
        images = ", ".join(name for name, shape in datasets.IMAGE_SHAPES.items() if shape)
        return (f"conv and pool layers need an image data set, and {dataset!r} has no image "
                f"shape (image data sets: {images}); use Dense and ReLU layers only")
    if image_shape is None:
        return None  # the width of plain feature vectors is known once loaded; Dense fits any
    try:
        layer_shapes(image_shape, layers)
    except ValueError as error:
        return f"on {dataset!r} images ({'x'.join(map(str, image_shape))}): {error}"
    return None


def mlp_problem(*, dataset: Any = None, hidden: Any = (), init: str = "he",
                **dataset_options: Any) -> str | None:
    """What :func:`build_mlp` would fail on, found without loading the data."""
    if init not in ("he", "small"):
        return f"unknown init {init!r} (valid: he, small)"
    problem = _dataset_problem(dataset)
    if problem:
        return problem
    if not (isinstance(hidden, tuple) and all(isinstance(units, int) and units >= 1
                                              for units in hidden)):
        return f"hidden must be a tuple of layer widths >= 1, not {hidden!r}"
    return None


build_network.options_problem = network_problem  # read by register_workload
build_mlp.options_problem = mlp_problem


def _register_mlp(name: str, summary: str, defaults: Defaults, **build_options: Any) -> None:
    register_workload(WorkloadSpec(name=name, summary=summary, defaults=defaults,
                                   build=partial(build_mlp, **build_options), group="mlp"))


def _register_network(name: str, summary: str, defaults: Defaults, architecture: str,
                      dataset: str) -> None:
    layers = {"cnn": CNN, "lenet": LENET}[architecture]
    register_workload(WorkloadSpec(name=name, summary=summary, defaults=defaults,
                                   build=partial(build_network, dataset=dataset,
                                                 architecture=architecture, layers=layers),
                                   group=architecture))


_register_mlp(
    "mlp-digits", "MLP 64-64-64-10 on scikit-learn's 8x8 digits (bundled, no download).",
    Defaults(lr=0.01, batch_size=16, target_loss=0.001, max_time=30.0),
    dataset="digits", hidden=(64, 64))
_register_mlp(
    "mlp-mnist", "MLP 784-128-128-128-10 on MNIST (the paper's network); needs mnist.",
    Defaults(lr=0.05, batch_size=16, target_loss=0.05, max_time=120.0),
    dataset="mnist", hidden=(128, 128, 128))
_register_mlp(
    "mlp-fashion", "MLP 784-128-128-128-10 on Fashion-MNIST; needs fashion-mnist.",
    Defaults(lr=0.05, batch_size=16, target_loss=0.3, max_time=120.0),
    dataset="fashion-mnist", hidden=(128, 128, 128))
_register_mlp(
    "mlp-synthetic", "MLP 100-128-128-10 on make_classification data (50,000 samples, generated).",
    Defaults(lr=0.05, batch_size=16, target_loss=0.15, max_time=60.0),
    dataset="synthetic", hidden=(128, 128), n_samples=50_000, n_features=100, n_classes=10)

_register_network(
    "cnn-mnist", "cnn (conv 3x3 1->4, pool, conv 3x3 4->8, pool, 200-128-10) on MNIST; needs mnist.",
    Defaults(lr=0.05, batch_size=16, target_loss=0.05, max_time=120.0), "cnn", "mnist")
_register_network(
    "cnn-fashion", "cnn on Fashion-MNIST; needs fashion-mnist.",
    Defaults(lr=0.05, batch_size=16, target_loss=0.33, max_time=120.0), "cnn", "fashion-mnist")
_register_network(
    "lenet-mnist", "LeNet (conv 5x5 1->6, pool, conv 5x5 6->16, pool, 256-120-10) on MNIST; "
    "needs mnist.",
    Defaults(lr=0.05, batch_size=16, target_loss=0.06, max_time=120.0), "lenet", "mnist")
_register_network(
    "lenet-fashion", "LeNet on Fashion-MNIST; needs fashion-mnist.",
    Defaults(lr=0.05, batch_size=16, target_loss=0.36, max_time=120.0), "lenet", "fashion-mnist")
_register_network(
    "lenet-cifar10", "LeNet on 32x32x3 CIFAR-10 (conv 5x5 3->6, pool, conv 5x5 6->16, pool, 400-120-10); "
    "needs cifar10. Defaults untested on real CIFAR-10.",
    Defaults(lr=0.02, batch_size=16, target_loss=1.5, max_time=300.0), "lenet", "cifar10")
