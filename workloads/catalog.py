"""The named MLP workloads: data set, layer sizes and tuned defaults.

Defaults keep small minibatches on purpose: synchronization matters most when
a gradient costs about as much as a publish, and large batches would hide it.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from asgdbench.workloads import datasets, mlp
from asgdbench.workloads.base import Defaults, Workload, WorkloadSpec, register_workload

_TRAINING_LOSS_SAMPLES = 10_000  # enough for a stable divergence baseline, and quick


def build_mlp(spec: WorkloadSpec, *, data_dir: str | None, dtype: np.dtype,
              dataset: str, hidden: tuple[int, ...], init: str = "he",
              **dataset_options) -> Workload:
    """An MLP workload on one of :data:`datasets.DATASETS`."""
    loader = datasets.DATASETS[dataset]
    data = loader(data_dir, **dataset_options) if dataset == "mnist" else loader(**dataset_options)
    model = mlp.MLP((data.n_features, *hidden, data.n_classes), dtype)
    X_train = np.ascontiguousarray(data.X_train, dtype=dtype)
    X_test = np.ascontiguousarray(data.X_test, dtype=dtype)
    head = slice(0, _TRAINING_LOSS_SAMPLES)

    def evaluate(params: np.ndarray) -> dict[str, float]:
        loss, accuracy = model.evaluate(params, X_test, data.y_test)
        return {"test_loss": loss, "test_accuracy": accuracy}

    return Workload(
        name=spec.name,
        gradient=mlp.gradient,
        train_data=(X_train, data.y_train, model.layers),
        n_samples=X_train.shape[0],
        n_params=model.n_params,
        dtype=dtype,
        init_params=partial(model.init_params, init=init),
        make_workspace=model.make_workspace,
        evaluate=evaluate,
        training_loss=lambda params: model.evaluate(params, X_train[head], data.y_train[head])[0],
        defaults=spec.defaults,
        description={"model": "mlp", "layers": list(model.layer_sizes), "dataset": dataset,
                     "dtype": dtype.name, "n_train": int(X_train.shape[0]),
                     "n_test": int(X_test.shape[0]), "init": init},
    )


register_workload(WorkloadSpec(
    name="mlp-digits",
    summary="MLP 64-64-64-10 on scikit-learn's 8x8 digits (bundled, no download).",
    defaults=Defaults(lr=0.01, batch_size=16, target_loss=0.001, max_time=30.0),
    build=partial(build_mlp, dataset="digits", hidden=(64, 64)),
))

register_workload(WorkloadSpec(
    name="mlp-mnist",
    summary="MLP 784-128-128-128-10 on MNIST (the paper's network); needs the MNIST files.",
    defaults=Defaults(lr=0.05, batch_size=16, target_loss=0.05, max_time=120.0),
    build=partial(build_mlp, dataset="mnist", hidden=(128, 128, 128)),
))

register_workload(WorkloadSpec(
    name="mlp-synthetic",
    summary="MLP 100-128-128-10 on make_classification data (50,000 samples, generated).",
    defaults=Defaults(lr=0.05, batch_size=16, target_loss=0.15, max_time=60.0),
    build=partial(build_mlp, dataset="synthetic", hidden=(128, 128),
                  n_samples=50_000, n_features=100, n_classes=10),
))
