"""CIFAR-10: the binary batches in the data folder, read and checked for whole records."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from asgdbench.errors import DataError
from asgdbench.workloads.data_folder import (
    DATA_ENV_VAR,
    read_bytes,
    resolve_data_dir,
    scaled_pixels,
)
from asgdbench.workloads.train_test import Dataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published with the archive
CIFAR10_FOLDER = "cifar-10-batches-bin"  # what the archive unpacks to
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_IMAGE_SHAPE = (3, 32, 32)
_CIFAR10_RECORD = 1 + 3 * 32 * 32  # a label byte, then 1024 red, 1024 green, 1024 blue bytes
_GET_CIFAR10 = (f"run `asgdbench download cifar10` or set {DATA_ENV_VAR} to a folder "
                f"containing cifar10/{CIFAR10_FOLDER}/")


def load_cifar10(data_dir: str | os.PathLike | None = None,
                 dtype: np.dtype | type = np.float64) -> Dataset:
    """The 50,000/10,000 CIFAR-10 split from <data_dir>/cifar10/cifar-10-batches-bin/.

    Each row is one 32x32 RGB image as (channel, row, column), pixels scaled to
    [0, 1]. The archive's MD5 is checked when it is downloaded; here each batch
    file is checked for whole records and valid labels.
    """
    folder = resolve_data_dir(data_dir) / "cifar10" / CIFAR10_FOLDER
    try:
        train = [read_cifar10_batch(folder / name) for name in CIFAR10_TRAIN]
        X_test, y_test = read_cifar10_batch(folder / CIFAR10_TEST)
    except DataError as err:
        raise DataError(f"{err}; {_GET_CIFAR10}") from err
    X_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return Dataset("cifar10", scaled_pixels(X_train, dtype), y_train,
                   scaled_pixels(X_test, dtype), y_test, n_classes=10,
                   image_shape=CIFAR10_IMAGE_SHAPE)


def read_cifar10_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 3072) as uint8 and labels (n,) of one binary batch file."""
    raw = read_bytes(path, "CIFAR-10")
    if not raw or len(raw) % _CIFAR10_RECORD:
        raise DataError(f"CIFAR-10 file {path} is truncated or corrupt ({len(raw)} bytes is not a "
                        f"whole number of {_CIFAR10_RECORD}-byte records)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"CIFAR-10 file {path} is corrupt (label {labels.max()} is not 0..9)")
    return records[:, 1:], labels
