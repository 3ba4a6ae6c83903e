"""MNIST and Fashion-MNIST: four gzip IDX files each, in the data folder, read and verified.

The checksums are those of the decompressed files (any mirror's recompression reads the same).
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from asgdbench.errors import DataError
from asgdbench.workloads.data_folder import (
    DATA_ENV_VAR,
    check_sha256,
    gunzip,
    read_bytes,
    resolve_data_dir,
    scaled_pixels,
)
from asgdbench.workloads.train_test import Dataset


@dataclass(frozen=True)
class IdxSource:
    """A data set in MNIST's format: four gzip IDX files, 28x28 images, 10 classes.

    The checksums are SHA-256 of the *decompressed* files: unlike the .gz
    bytes, they are the same for every copy, whichever mirror recompressed it.
    """

    name: str  # its folder under the data folder, and its `asgdbench download` name
    title: str  # how messages call it
    mirrors: tuple[str, ...]
    sha256: Mapping[str, str]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f"{name}.gz" for name in self.sha256)

    @property
    def remedy(self) -> str:
        return (f"run `asgdbench download {self.name}` or set {DATA_ENV_VAR} to a folder "
                f"containing {self.name}/")


MNIST = IdxSource(
    name="mnist",
    title="MNIST",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    sha256={
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
)
FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    title="Fashion-MNIST",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
    sha256={
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
)
MNIST_MIRRORS = MNIST.mirrors
MNIST_SHA256 = MNIST.sha256
MNIST_FILES = MNIST.files

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_IMAGE_SHAPE = (28, 28)
IDX_IMAGE_SHAPE = (1, *_IDX_IMAGE_SHAPE)
"""``Dataset.image_shape`` of an IDX set: one channel of 28x28."""


def load_mnist(data_dir: str | os.PathLike | None = None, dtype: np.dtype | type = np.float64) -> Dataset:
    """The 60,000/10,000 MNIST split from <data_dir>/mnist/, pixels scaled to [0, 1]."""
    return _load_idx_set(MNIST, data_dir, dtype)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None,
                       dtype: np.dtype | type = np.float64) -> Dataset:
    """The 60,000/10,000 Fashion-MNIST split from <data_dir>/fashion-mnist/, pixels in [0, 1]."""
    return _load_idx_set(FASHION_MNIST, data_dir, dtype)


def _load_idx_set(source: IdxSource, data_dir: str | os.PathLike | None, dtype) -> Dataset:
    folder = resolve_data_dir(data_dir) / source.name
    try:
        X_train, y_train = _load_idx_split(folder, "train", source.sha256, source.title, dtype)
        X_test, y_test = _load_idx_split(folder, "t10k", source.sha256, source.title, dtype)
    except DataError as err:
        raise DataError(f"{err}; {source.remedy}") from err
    return Dataset(source.name, X_train, y_train, X_test, y_test, n_classes=10,
                   image_shape=IDX_IMAGE_SHAPE)


def _load_idx_split(folder: pathlib.Path, prefix: str, checksums: Mapping[str, str] = MNIST_SHA256,
                    title: str = "MNIST", dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 784) in [0, 1] and labels (n,) of one split, checked to belong together."""
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _parse_idx(read_verified(images_path, checksums, title), _IMAGES_MAGIC,
                        f"{title} file {images_path}")
    labels = _parse_idx(read_verified(labels_path, checksums, title), _LABELS_MAGIC,
                        f"{title} file {labels_path}")
    if images.shape[1:] != _IDX_IMAGE_SHAPE:
        raise DataError(
            f"{title} file {images_path} has a bad header: images are "
            f"{images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{title} files {images_path} and {labels_path} do not match: "
            f"{len(images)} images but {len(labels)} labels"
        )
    return scaled_pixels(images.reshape(len(images), -1), dtype), labels.astype(np.int64)


def read_verified(path: pathlib.Path, checksums: Mapping[str, str], title: str = "MNIST") -> bytes:
    """The decompressed content of an IDX .gz file, after checking it is the published file."""
    raw = gunzip(read_bytes(path, title), f"{title} file {path}")
    check_sha256(raw, path.name.removesuffix(".gz"), f"{title} file {path}", checksums)
    return raw


def _parse_idx(raw: bytes, magic: int, source: str) -> np.ndarray:
    """An unsigned-byte IDX array, after checking its magic number, dimensions and length.

    Layout: 4-byte big-endian magic (0x0000_08_<ndim>), ndim big-endian uint32
    sizes, then the values, row-major.
    """
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big")
    if len(raw) >= 4 and found != magic:
        raise DataError(
            f"{source} has a bad header (magic number 0x{found:08x}, expected 0x{magic:08x})"
        )
    if len(raw) < header_size:
        raise DataError(
            f"{source} is truncated "
            f"({len(raw)} bytes, shorter than its {header_size}-byte IDX header)"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if 0 in shape:
        raise DataError(f"{source} has a bad header (dimensions {shape} include a zero)")
    expected_size = header_size + math.prod(shape)
    if len(raw) < expected_size:
        raise DataError(
            f"{source} is truncated ({len(raw)} bytes, its IDX header for shape {shape} "
            f"needs {expected_size})"
        )
    if len(raw) > expected_size:
        raise DataError(
            f"{source} is corrupt ({len(raw) - expected_size} unexpected bytes after the "
            f"data for shape {shape})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)
