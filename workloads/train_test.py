"""A data set as training sees it: a :class:`Dataset` (a train/test split of dense matrices),
and how one is made from arrays (:func:`split`, :func:`standardized`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asgdbench.errors import ConfigError, one_line


# eq=False: dataclass equality would compare arrays elementwise, which has no single truth value.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for training: C-contiguous float features (float64 unless the
    loader was asked for float32), int64 labels 0..n_classes-1.

    Image data sets also say their ``image_shape`` (channels, height, width): a
    row of ``X`` is one image flattened in that order, as convolutions read it.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_features(self) -> int:
        """Width of a sample, which sizes the model's parameters."""
        return int(self.X_train.shape[1])


def split(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    test_fraction: float,
    seed: int,
    stratify: bool,
) -> Dataset:
    """Reproducible train/test split; a split the data cannot support is the user's configuration error."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    try:
        from sklearn.model_selection import train_test_split  # slow import: only when used

        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None
        )
    except ValueError as err:
        raise ConfigError(
            f"cannot split {name} with test_fraction={test_fraction}: {one_line(err)}"
        ) from err
    return Dataset(
        name=name,
        X_train=np.ascontiguousarray(X_train, dtype=np.float64),
        y_train=np.ascontiguousarray(y_train, dtype=np.int64),
        X_test=np.ascontiguousarray(X_test, dtype=np.float64),
        y_test=np.ascontiguousarray(y_test, dtype=np.int64),
        n_classes=n_classes,
    )


def standardized(data: Dataset) -> Dataset:
    """Zero mean, unit variance per feature using train statistics only, so the test set stays unseen."""
    mean = data.X_train.mean(axis=0)
    std = data.X_train.std(axis=0)
    std[std == 0.0] = 1.0  # a constant feature stays constant instead of becoming NaN
    return Dataset(
        name=data.name,
        X_train=(data.X_train - mean) / std,
        y_train=data.y_train,
        X_test=(data.X_test - mean) / std,
        y_test=data.y_test,
        n_classes=data.n_classes,
    )
