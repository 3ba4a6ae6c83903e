"""Data sets the benchmark trains on, by name: the table the workloads load them from.

Each source has a module of its own: :mod:`.sklearn_sets` (digits and synthetic, no files),
:mod:`.idx_files` (MNIST, Fashion-MNIST) and :mod:`.cifar10`, read from the data folder
(:mod:`.data_folder`) that :mod:`.download` fills; every loader returns a
:class:`~.train_test.Dataset`. Every problem with the data surfaces as a one-line
``DataError`` that says how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from asgdbench.workloads.cifar10 import CIFAR10_IMAGE_SHAPE, load_cifar10
from asgdbench.workloads.data_folder import DATA_ENV_VAR, resolve_data_dir
from asgdbench.workloads.idx_files import IDX_IMAGE_SHAPE, load_fashion_mnist, load_mnist
from asgdbench.workloads.sklearn_sets import load_digits, load_synthetic
from asgdbench.workloads.train_test import Dataset

__all__ = ["DATASETS", "DATA_ENV_VAR", "Dataset", "FILE_DATASETS", "IMAGE_SHAPES",
           "load_cifar10", "load_digits", "load_fashion_mnist", "load_mnist", "load_synthetic",
           "resolve_data_dir"]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}
IMAGE_SHAPES: dict[str, tuple[int, int, int] | None] = {
    "digits": None,
    "synthetic": None,
    "mnist": IDX_IMAGE_SHAPE,
    "fashion-mnist": IDX_IMAGE_SHAPE,
    "cifar10": CIFAR10_IMAGE_SHAPE,
}
"""Each data set's ``Dataset.image_shape``, known without loading it: None for a set of plain
feature vectors, on which a convolution or a pool cannot run."""
FILE_DATASETS = frozenset({"mnist", "fashion-mnist", "cifar10"})
"""The data sets read from the data folder: their loaders take ``(data_dir, dtype=...)``."""
